import FlexWire

/// IPv6 frames for tests, made from IPv4 ones.
enum IPv6Frames {
    /// The IPv4 TCP or UDP `frame` carried over IPv6 instead: each address becomes
    /// `prefix` (12 bytes) + the IPv4 address, the checksum is recomputed over the IPv6
    /// pseudo-header. nil for other frames.
    static func twin(of frame: UnsafeMutableRawBufferPointer, prefix: [UInt8]) -> [UInt8]? {
        guard let f = try? ParsedFrame(parsing: frame), f.layers.contains(.ipv4), f.hasPorts, !f.layers.contains(.fragment) else { return nil }
        let l4 = Array(UnsafeRawBufferPointer(rebasing: frame[Int(f.l4Offset)..<Int(f.frameLength)]))
        var out = Array(UnsafeRawBufferPointer(rebasing: frame[0..<12])) + [0x86, 0xDD]
        out += [0x60, 0, 0, 0, UInt8(l4.count >> 8), UInt8(l4.count & 255), f.ipProtocol, 64]
        for a in [f.sourceAddress, f.destinationAddress] {
            out += prefix + [UInt8(a >> 24), UInt8(a >> 16 & 255), UInt8(a >> 8 & 255), UInt8(a & 255)]
        }
        let at = out.count + (f.layers.contains(.tcp) ? 16 : 6)
        out += l4
        out[at] = 0
        out[at + 1] = 0
        let sum = out.withUnsafeBytes { b in
            var c = IPv6Header.pseudoHeaderChecksum(header: b.baseAddress! + 14, l4Length: l4.count, protocol: f.ipProtocol)
            c.add(bytes: b.baseAddress! + 54, count: l4.count)
            return c.value
        }
        out[at] = UInt8(sum >> 8)
        out[at + 1] = UInt8(sum & 255)
        return out
    }

    /// IPv4-mapped IPv6 (`::ffff:a.b.c.d`): the same numbers as the IPv4 addresses.
    static let mappedPrefix: [UInt8] = [UInt8](repeating: 0, count: 10) + [0xFF, 0xFF]
}
