import FlexWire
import Glibc

/// Addresses as detection compares them: 128-bit numbers, an IPv4 address as its
/// IPv4-mapped IPv6 form (`::ffff:a.b.c.d`), so that one address set, one flow key and
/// one alert format serve both families. `any` covers both; an IPv4 block covers
/// mapped addresses only, so `!$HOME_NET` (IPv4 blocks) includes every IPv6 address,
/// as in Snort.
public enum IPAddressing {
    static let mappedPrefix: UInt128 = 0xFFFF << 32

    @inline(__always)
    public static func mapped(_ v4: UInt32) -> UInt128 { mappedPrefix | UInt128(v4) }

    @inline(__always)
    public static func isIPv4(_ a: UInt128) -> Bool { a >> 32 == 0xFFFF }

    /// Dotted quad for an IPv4 address; RFC 5952 text (`inet_ntop`) for IPv6.
    public static func text(_ a: UInt128) -> String {
        if isIPv4(a) { return IPv4Address(UInt32(truncatingIfNeeded: a)).description }
        var bytes = (0..<16).map { UInt8(truncatingIfNeeded: a >> (120 - 8 * $0)) }
        var out = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
        guard inet_ntop(AF_INET6, &bytes, &out, socklen_t(out.count)) != nil else { return "?" }
        return String(cString: out)
    }

    /// An IPv4 dotted quad (as its mapped form) or IPv6 text; nil for anything else.
    public static func parse(_ text: Substring) -> UInt128? {
        if let v4 = IPv4Address(String(text)) { return mapped(v4.value) }
        guard text.contains(":") else { return nil }
        var bytes = [UInt8](repeating: 0, count: 16)
        guard inet_pton(AF_INET6, String(text), &bytes) == 1 else { return nil }
        return bytes.reduce(0) { $0 << 8 | UInt128($1) }
    }
}

/// A packet's source and destination in `IPAddressing`'s form, read once per packet.
struct PacketAddresses: Hashable {
    var source: UInt128
    var destination: UInt128

    @inline(__always)
    init(_ frame: ParsedFrame, _ bytes: UnsafeRawPointer) {
        if frame.layers.contains(.ipv6) {
            source = IPv6Header.address(bytes + Int(frame.l3Offset) + 8)
            destination = IPv6Header.address(bytes + Int(frame.l3Offset) + 24)
        } else {
            source = IPAddressing.mapped(frame.sourceAddress)
            destination = IPAddressing.mapped(frame.destinationAddress)
        }
    }

    init(source: UInt128, destination: UInt128) {
        self.source = source
        self.destination = destination
    }
}

extension ParsedFrame {
    /// ICMP over IPv4 or ICMPv6 over IPv6: what `icmp` rules and the ICMP options see.
    @inline(__always)
    var isICMP: Bool { layers.contains(.ipv6) ? ipProtocol == 58 : ipProtocol == 1 }
}
