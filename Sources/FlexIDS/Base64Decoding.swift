/// `base64_decode`'s decoding, as Snort 2.9 does it, in two passes over caller-owned
/// memory (nothing is allocated):
///
/// 1. **Unfold** the input as one header line: a CR or LF followed by a space or tab
///    continues the line (the line break and that blank are dropped); any other line end
///    ends the input. Other blanks are kept.
/// 2. **Decode** the first `limit` unfolded bytes (all without one): bytes outside the
///    base64 alphabet are skipped; each group of four makes three bytes; `=` in a group's
///    third or fourth place ends the data after the bytes before it; `=` in its first or
///    second place is an error; an incomplete last group is ignored.
///
/// Decoding runs in place: a group's bytes are written after its four were read, so the
/// output never overtakes the input.
enum Base64Decoding {
    /// Decodes `input` into `output`, which must hold `input.count` bytes. Returns how
    /// many bytes were decoded (possibly 0), or nil on an error.
    static func decode(_ input: UnsafeRawBufferPointer, limit: Int?, into output: UnsafeMutableRawBufferPointer) -> Int? {
        precondition(output.count >= input.count)
        return decodeInPlace(output, count: unfold(input, into: output, limit: limit ?? input.count))
    }

    /// Pass 1: the header line's bytes, unfolded, into `output`, up to `limit` of them;
    /// returns their count.
    static func unfold(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer, limit: Int) -> Int {
        enum LineEnd { case none, afterLF, afterCR }
        var state = LineEnd.none
        var n = 0
        for byte in input where n < limit {
            switch (byte, state) {
            case (0x20, .none), (0x09, .none):
                output[n] = byte
                n += 1
            case (0x20, _), (0x09, _): state = .none  // a folded line goes on; the blank goes
            case (0x0A, .none), (0x0A, .afterCR): state = .afterLF
            case (0x0D, .none): state = .afterCR
            case (_, .none):
                output[n] = byte
                n += 1
            default: return n  // the header ended
            }
        }
        return n
    }

    /// Pass 2: decodes `buffer[0..<count]` over itself.
    static func decodeInPlace(_ buffer: UnsafeMutableRawBufferPointer, count: Int) -> Int? {
        var group: UInt32 = 0  // the group's sextets so far, `=` as 0
        var inGroup = 0
        var padding: Int? = nil  // where the group's first `=` is
        var written = 0
        for i in 0..<count {
            let c = buffer[i]
            var value: UInt8 = 0
            if c == UInt8(ascii: "=") {
                padding = padding ?? inGroup
            } else {
                value = sextet[Int(c)]
                guard value != invalid else { continue }
            }
            group = group << 6 | UInt32(value)
            inGroup += 1
            guard inGroup == 4 else { continue }
            // `=` third: one byte, then the end; fourth: two; none: three and go on.
            let bytes = padding.map { $0 - 1 } ?? 3
            guard bytes >= 1 else { return nil }
            for k in 0..<bytes {
                buffer[written] = UInt8(truncatingIfNeeded: group >> (16 - 8 * k))
                written += 1
            }
            guard padding == nil else { break }
            (group, inGroup) = (0, 0)
        }
        return written
    }

    static let invalid: UInt8 = 0xFF

    /// Each byte's value in the base64 alphabet, or `invalid`.
    static let sextet: [UInt8] = {
        var table = [UInt8](repeating: invalid, count: 256)
        for (value, char) in "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8.enumerated() {
            table[Int(char)] = UInt8(value)
        }
        return table
    }()
}
