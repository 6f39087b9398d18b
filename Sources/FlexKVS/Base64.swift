/// Base64 as memcached's meta commands read and write keys (RFC 4648 alphabet, with
/// padding). Decoding is memcached's: bytes outside the alphabet are skipped, what is
/// left must be whole 4-character groups, and a group with padding ends the input.
enum Base64 {
    static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
    /// The 6-bit value of each byte; 0x80 for bytes outside the alphabet ('=' is 0).
    static let values: [UInt8] = {
        var v = [UInt8](repeating: 0x80, count: 256)
        for (i, c) in alphabet.enumerated() { v[Int(c)] = UInt8(i) }
        v[Int(UInt8(ascii: "="))] = 0
        return v
    }()

    /// The decoded bytes, or nil where memcached's decoder returns nothing.
    static func decode(_ text: UnsafeRawBufferPointer) -> [UInt8]? {
        let significant = text.reduce(0) { $0 + (values[Int($1)] == 0x80 ? 0 : 1) }
        guard significant > 0, significant % 4 == 0 else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(significant / 4 * 3)
        var block: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
        var count = 0, pad = 0
        for c in text {
            let v = values[Int(c)]
            if v == 0x80 { continue }
            if c == UInt8(ascii: "=") { pad += 1 }
            switch count {
            case 0: block.0 = v
            case 1: block.1 = v
            case 2: block.2 = v
            default: block.3 = v
            }
            count += 1
            guard count == 4 else { continue }
            out += [block.0 << 2 | block.1 >> 4, block.1 << 4 | block.2 >> 2, block.2 << 6 | block.3]
            count = 0
            if pad > 0 {
                guard pad <= 2 else { return nil }
                out.removeLast(pad)
                break
            }
        }
        return out.isEmpty ? nil : out
    }

    /// Appends the encoding of `bytes` to `out`.
    static func encode(_ bytes: UnsafeRawBufferPointer, into out: inout SessionBytes) {
        var i = 0
        while bytes.count - i >= 3 {
            let (a, b, c) = (bytes[i], bytes[i + 1], bytes[i + 2])
            out.append(alphabet[Int(a >> 2)])
            out.append(alphabet[Int((a & 3) << 4 | b >> 4)])
            out.append(alphabet[Int((b & 0xF) << 2 | c >> 6)])
            out.append(alphabet[Int(c & 0x3F)])
            i += 3
        }
        let rest = bytes.count - i
        guard rest > 0 else { return }
        let a = bytes[i], b = rest == 2 ? bytes[i + 1] : 0
        out.append(alphabet[Int(a >> 2)])
        out.append(alphabet[Int((a & 3) << 4 | b >> 4)])
        out.append(rest == 2 ? alphabet[Int((b & 0xF) << 2)] : UInt8(ascii: "="))
        out.append(UInt8(ascii: "="))
    }
}
