import CPCRE2

/// A PCRE2 pattern compiled (and JIT-compiled where the platform allows) once at load;
/// immutable, so instances share it. Matching needs a `PatternScratch` per thread.
public final class CompiledPattern: @unchecked Sendable {
    let code: OpaquePointer
    public let isJIT: Bool
    /// Anchored (`^` without multiline, `\A`, or the `A` flag): it can match only where
    /// the search starts, so searching again further on finds nothing new.
    public let isAnchored: Bool

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
        var all: UInt32 = 0
        pcre2_pattern_info_8(compiled, UInt32(PCRE2_INFO_ALLOPTIONS), &all)
        isAnchored = all & UInt32(PCRE2_ANCHORED) != 0
    }

    deinit { pcre2_code_free_8(code) }

    public enum SearchResult: Equatable {
        case match(Range<Int>)
        case noMatch
        /// PCRE2 gave up (match or depth limit, JIT stack): neither a match nor proof of none.
        case failed
    }

    /// The first match in `subject` at or after `start`, as byte offsets; work is bounded
    /// by the scratch's limits.
    public func search(_ subject: UnsafeRawBufferPointer, from start: Int, scratch: PatternScratch) -> SearchResult {
        guard start <= subject.count else { return .noMatch }
        let base = subject.baseAddress?.assumingMemoryBound(to: UInt8.self) ?? UnsafePointer(bitPattern: 1)!
        let rc = isJIT
            ? pcre2_jit_match_8(code, base, subject.count, start, 0, scratch.data, scratch.context)
            : pcre2_match_8(code, base, subject.count, start, 0, scratch.data, scratch.context)
        if rc == PCRE2_ERROR_NOMATCH { return .noMatch }
        guard rc >= 0, let v = pcre2_get_ovector_pointer_8(scratch.data) else { return .failed }
        return .match(Int(v[0])..<Int(max(v[0], v[1])))
    }
}

/// Per-thread match state for `CompiledPattern`: PCRE2 match data for one pair, and a
/// match context with Snort's default limits (1,500 match steps, depth 1,500), so no
/// payload can make one pattern run away.
public final class PatternScratch {
    let data: OpaquePointer
    let context: OpaquePointer
    public static let matchLimit: UInt32 = 1500

    public init() {
        data = pcre2_match_data_create_8(1, nil)
        context = pcre2_match_context_create_8(nil)
        pcre2_set_match_limit_8(context, Self.matchLimit)
        pcre2_set_depth_limit_8(context, Self.matchLimit)
    }

    deinit {
        pcre2_match_data_free_8(data)
        pcre2_match_context_free_8(context)
    }
}
