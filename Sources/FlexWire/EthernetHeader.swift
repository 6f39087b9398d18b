/// A 48-bit MAC address in network order.
public struct MACAddress: Hashable, Sendable, CustomStringConvertible {
    public var bytes: (UInt8, UInt8, UInt8, UInt8, UInt8, UInt8)

    @inlinable public init(_ b0: UInt8, _ b1: UInt8, _ b2: UInt8, _ b3: UInt8, _ b4: UInt8, _ b5: UInt8) {
        bytes = (b0, b1, b2, b3, b4, b5)
    }

    public static let zero = MACAddress(0, 0, 0, 0, 0, 0)
    public static let broadcast = MACAddress(0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF)

    public static func == (a: MACAddress, b: MACAddress) -> Bool {
        a.bytes.0 == b.bytes.0 && a.bytes.1 == b.bytes.1 && a.bytes.2 == b.bytes.2
            && a.bytes.3 == b.bytes.3 && a.bytes.4 == b.bytes.4 && a.bytes.5 == b.bytes.5
    }

    public func hash(into h: inout Hasher) {
        withUnsafeBytes(of: bytes) { h.combine(bytes: $0) }
    }

    public var description: String {
        withUnsafeBytes(of: bytes) { $0.map { hex2($0) }.joined(separator: ":") }
    }

    /// Writes the 6 bytes at `p` (two stores, not a `memmove` call).
    @inlinable @inline(__always) func store(to p: UnsafeMutableRawPointer) {
        withUnsafeBytes(of: bytes) { b in
            p.storeBytes(of: b.loadUnaligned(as: UInt32.self), as: UInt32.self)
            p.storeBytes(of: b.loadUnaligned(fromByteOffset: 4, as: UInt16.self), toByteOffset: 4, as: UInt16.self)
        }
    }

    @inlinable @inline(__always) static func load(from p: UnsafeRawPointer) -> MACAddress {
        var m = MACAddress(0, 0, 0, 0, 0, 0)
        withUnsafeMutableBytes(of: &m.bytes) { b in
            b.storeBytes(of: p.loadUnaligned(as: UInt32.self), as: UInt32.self)
            b.storeBytes(of: p.loadUnaligned(fromByteOffset: 4, as: UInt16.self), toByteOffset: 4, as: UInt16.self)
        }
        return m
    }
}

@usableFromInline func hex2(_ b: UInt8) -> String {
    let digits = Array("0123456789abcdef")
    return String([digits[Int(b >> 4)], digits[Int(b & 15)]])
}

/// Ethernet II header (14 bytes), optionally followed by one 802.1Q tag.
public struct EthernetHeader {
    public static let length = 14
    public static let vlanTagLength = 4

    public enum EtherType: UInt16, Sendable {
        case ipv4 = 0x0800, arp = 0x0806, vlan = 0x8100, ipv6 = 0x86DD
    }

    public let base: UnsafeMutableRawPointer

    /// Views the first 14 bytes of `frame`; fails if the frame is shorter.
    @inlinable @inline(__always)
    public init(_ frame: UnsafeMutableRawBufferPointer) throws(WireError) {
        guard frame.count >= Self.length, let b = frame.baseAddress else {
            throw .truncated(.ethernet, needed: Self.length, available: frame.count)
        }
        base = b
    }

    public var destination: MACAddress {
        get { .load(from: base) }
        nonmutating set { newValue.store(to: base) }
    }
    public var source: MACAddress {
        get { .load(from: base + 6) }
        nonmutating set { newValue.store(to: base + 6) }
    }
    @inlinable public var etherType: UInt16 {
        get { UnsafeRawPointer(base).loadBE16(at: 12) }
        nonmutating set { base.storeBE16(newValue, at: 12) }
    }

    /// Swaps source and destination addresses in place (a reply's first step).
    @inlinable public func swapAddresses() {
        base.swapFields(UInt32.self, at: 0, 6)
        base.swapFields(UInt16.self, at: 4, 10)
    }
}
