import FlexWire

/// The tunnels Snort's decoder looks through, so that rules see the packet inside:
/// 802.1ad and QinQ (stacked VLAN tags), MPLS (a label stack over IPv4 or IPv6), GRE
/// (IPv4, IPv6 or Ethernet inside, with optional checksum, key and sequence fields), IP
/// in IP over either family (IPv4 in IPv4 or IPv6, 6in4, IPv6 in IPv6), VXLAN (UDP port
/// 4789, Ethernet inside) and Teredo (UDP port 3544, IPv6 inside), nested up to
/// `maximumDepth` times. A fragmented outer packet is inspected as it came.
enum Decapsulation {
    static let maximumDepth = 4
    static let vxlanPort: UInt16 = 4789
    static let teredoPort: UInt16 = 3544
    /// The innermost IP packet of `frame`, behind a synthetic Ethernet header, in
    /// `scratch` (as large as the largest frame); nil when `frame` has no tunnel to open
    /// (a single 802.1Q tag is no tunnel: the parser reads it).
    static func inner(_ frame: UnsafeRawBufferPointer, scratch: UnsafeMutableRawBufferPointer) -> UnsafeMutableRawBufferPointer? {
        var at = 0            // start of the current Ethernet header
        var ip = -1           // start of the IP packet found
        var opened = false
        var depth = 0
        let n = frame.count
        func be16(_ o: Int) -> UInt16? { o + 2 <= n ? UInt16(frame[o]) << 8 | UInt16(frame[o + 1]) : nil }
        func version(_ o: Int) -> UInt8? { o < n ? frame[o] >> 4 : nil }
        outer: while depth <= maximumDepth {
            // Layer 2: tags, then IPv4, IPv6 or MPLS.
            var o = at + 12
            var tags = 0
            while let t = be16(o), t == 0x8100 || t == 0x88A8 || t == 0x9100 {
                o += 4
                tags += 1
            }
            if tags > 1 { opened = true }
            guard let type = be16(o) else { return nil }
            o += 2
            switch type {
            case 0x0800, 0x86DD: ip = o
            case 0x8847, 0x8848:
                // MPLS labels until the bottom of the stack, then IP (by its version).
                while o + 4 <= n && frame[o + 2] & 1 == 0 { o += 4 }
                o += 4
                guard let v = version(o), v == 4 || v == 6 else { return nil }
                opened = true
                ip = o
            default: return nil
            }
            // Layer 3 and 4: tunnels inside IP.
            while depth <= maximumDepth {
                depth += 1
                let proto: UInt8, l4: Int
                switch version(ip) {
                case 4:
                    guard ip + 20 <= n else { return nil }
                    let headerLength = Int(frame[ip] & 0x0F) * 4
                    let fragmented = (be16(ip + 6) ?? 0) & 0x3FFF != 0
                    l4 = ip + headerLength
                    guard headerLength >= 20, !fragmented, l4 <= n else { break outer }
                    proto = frame[ip + 9]
                case 6:
                    let bytes = UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(mutating: frame.baseAddress! + ip), count: n - ip)
                    // Not IPv6 after all (a Teredo port's other traffic): no tunnel.
                    guard let header = try? IPv6Header(bytes) else { return nil }
                    guard !header.isFragment else { break outer }
                    l4 = ip + header.headersLength
                    proto = header.upperProtocol
                default:
                    return nil
                }
                switch proto {
                case 4, 41:
                    guard version(l4) == (proto == 4 ? 4 : 6) else { break outer }
                    ip = l4
                    opened = true
                case 47:
                    guard let flags = be16(l4), let inner = be16(l4 + 2), flags & 0x0007 == 0 else { break outer }
                    var payload = l4 + 4
                    if flags & 0x8000 != 0 { payload += 4 }
                    if flags & 0x2000 != 0 { payload += 4 }
                    if flags & 0x1000 != 0 { payload += 4 }
                    switch inner {
                    case 0x0800, 0x86DD:
                        ip = payload
                        opened = true
                    case 0x6558:
                        at = payload
                        opened = true
                        continue outer
                    default: break outer
                    }
                case 17:
                    let sourcePort = be16(l4), destinationPort = be16(l4 + 2)
                    if destinationPort == vxlanPort, l4 + 16 + 14 <= n, frame[l4 + 8] & 0x08 != 0 {
                        at = l4 + 16
                        opened = true
                        continue outer
                    }
                    // Teredo: IPv6 straight after the UDP header (origin indication and
                    // authentication headers, which start with a zero byte, are not read).
                    guard sourcePort == teredoPort || destinationPort == teredoPort, version(l4 + 8) == 6, l4 + 8 + 40 <= n else { break outer }
                    ip = l4 + 8
                    opened = true
                default: break outer
                }
            }
            break
        }
        guard opened, ip >= 0, let v = version(ip), v == 4 || v == 6 else { return nil }
        let inner = n - ip
        guard 14 + inner <= scratch.count else { return nil }
        let out = scratch.baseAddress!
        out.initializeMemory(as: UInt8.self, repeating: 0, count: 12)
        out.storeBytes(of: (v == 6 ? UInt16(0x86DD) : UInt16(0x0800)).bigEndian, toByteOffset: 12, as: UInt16.self)
        (out + 14).copyMemory(from: frame.baseAddress! + ip, byteCount: inner)
        return UnsafeMutableRawBufferPointer(start: out, count: 14 + inner)
    }
}
