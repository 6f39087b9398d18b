import CFlexSys
import Foundation

/// One libFuzzer binary for every parser that reads bytes from strangers:
/// `FLEXFUZZ_TARGET` names the target a run exercises (`FuzzTarget`; `Scripts/fuzz.sh`
/// sets it). `Scripts/fuzz.sh` builds it with `-sanitize=fuzzer,address -DFLEXFUZZ`;
/// a plain `swift build` makes a binary that only says so.
#if FLEXFUZZ
guard let name = ProcessInfo.processInfo.environment["FLEXFUZZ_TARGET"], let target = FuzzTarget(rawValue: name) else {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
    FileHandle.standardError.write(Data("flexfuzz: set FLEXFUZZ_TARGET to one of \(names)\n".utf8))
    exit(2)
}
FuzzTarget.current = target
target.prepare()
var argc = CommandLine.argc
var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzOne(data, size) })

/// libFuzzer's per-input entry (its library refers to it by name).
@_cdecl("LLVMFuzzerTestOneInput")
func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    FuzzTarget.current?.run(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
FileHandle.standardError.write(Data("flexfuzz: build and run it with Scripts/fuzz.sh (libFuzzer, -DFLEXFUZZ)\n".utf8))
exit(2)
#endif
