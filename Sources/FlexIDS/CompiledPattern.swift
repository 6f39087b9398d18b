import CPCRE2

/// A PCRE2 pattern compiled (and JIT-compiled where the platform allows) once at load;
/// immutable, so instances share it. Matching needs a `PatternScratch` per thread.
public final class CompiledPattern: @unchecked Sendable {
    let code: OpaquePointer
    public let isJIT: Bool

    /// Compiles `pattern` with PCRE2 `options`; PCRE2's complaint and its offset on error.
    public init(_ pattern: String, options: UInt32) throws(RuleError) {
        var error: Int32 = 0
        var offset = 0
        let bytes = Array(pattern.utf8)
        let compiled = bytes.withUnsafeBufferPointer { pcre2_compile_8($0.baseAddress, $0.count, options, &error, &offset, nil) }
        guard let compiled else {
            var message = [UInt8](repeating: 0, count: 256)
            let n = pcre2_get_error_message_8(error, &message, message.count)
            throw .badPattern("\(String(decoding: message.prefix(max(0, Int(n))), as: UTF8.self)) at offset \(offset) in /\(pattern)/")
        }
        code = compiled
        isJIT = pcre2_jit_compile_8(compiled, UInt32(PCRE2_JIT_COMPLETE)) == 0
    }

    deinit { pcre2_code_free_8(code) }

    /// The first match in `subject` at or after `start`, as byte offsets.
    public func firstMatch(in subject: UnsafeRawBufferPointer, from start: Int, scratch: PatternScratch) -> Range<Int>? {
        guard start <= subject.count else { return nil }
        let base = subject.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(bitPattern: 1)!
        let rc = isJIT
            ? pcre2_jit_match_8(code, base, subject.count, start, 0, scratch.data, nil)
            : pcre2_match_8(code, base, subject.count, start, 0, scratch.data, nil)
        guard rc >= 0, let v = pcre2_get_ovector_pointer_8(scratch.data) else { return nil }
        return Int(v[0])..<Int(max(v[0], v[1]))
    }
}

/// Per-thread match state for `CompiledPattern` (PCRE2 match data for one pair).
public final class PatternScratch {
    let data: OpaquePointer
    public init() { data = pcre2_match_data_create_8(1, nil) }
    deinit { pcre2_match_data_free_8(data) }
}
