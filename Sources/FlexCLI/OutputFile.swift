import Foundation

/// A file a command writes, as named on its command line (`--json FILE`, `--output
/// FILE`); `-` is standard output. Created (or emptied) when opened: a path that
/// cannot be written fails at once, before any work, with a one-line error.
public final class OutputFile {
    public let path: String
    let handle: FileHandle

    public init(_ path: String) throws {
        self.path = path
        if path == "-" {
            handle = .standardOutput
        } else {
            guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else {
                throw RuntimeFailure("\(path): cannot write the file")
            }
            handle = h
        }
    }

    public var isStandardOutput: Bool { path == "-" }

    /// Appends `text` and a newline.
    public func writeLine(_ text: String) { write(text + "\n") }

    /// Appends `text` (after whatever `print` buffered, when it is standard output).
    public func write(_ text: String) {
        if isStandardOutput { fflush(stdout) }
        handle.write(Data(text.utf8))
    }

    deinit { if !isStandardOutput { try? handle.close() } }
}
