/// UDP header view (RFC 768), 8 bytes; its length field must fit the datagram.
public struct UDPHeader: PortHeader {
    public static let length = 8
    public let base: UnsafeMutableRawPointer

    /// Views a UDP header at the start of `bytes` (the IP payload); the UDP length must
    /// cover the header and lie within `bytes`.
    @inlinable @inline(__always)
    public init(_ bytes: UnsafeMutableRawBufferPointer) throws(WireError) {
        guard bytes.count >= Self.length, let b = bytes.baseAddress else {
            throw .truncated(.udp, needed: Self.length, available: bytes.count)
        }
        let len = Int(UnsafeRawPointer(b).loadBE16(at: 4))
        guard len >= Self.length else { throw .inconsistent(.udp, "length \(len) below 8") }
        guard len <= bytes.count else { throw .truncated(.udp, needed: len, available: bytes.count) }
        base = b
    }

    @inlinable public init(unchecked base: UnsafeMutableRawPointer) { self.base = base }

    /// Header plus payload, in bytes.
    @inlinable public var length: Int {
        get { Int(UnsafeRawPointer(base).loadBE16(at: 4)) }
        nonmutating set { base.storeBE16(UInt16(truncatingIfNeeded: newValue), at: 4) }
    }
    public var checksum: UInt16 { UnsafeRawPointer(base).loadBE16(at: 6) }

    /// Computes the checksum over header and payload with `ip`'s pseudo-header.
    @inlinable public func updateChecksum(ip: IPv4Header) {
        base.storeBE16(0, at: 6)
        var sum = ip.pseudoHeaderChecksum(l4Length: length)
        sum.add(bytes: base, count: length)
        let v = sum.value
        base.storeBE16(v == 0 ? 0xFFFF : v, at: 6)  // 0 means "no checksum" in UDP
    }

    /// True if the checksum is absent (0) or verifies.
    @inlinable public func verifyChecksum(ip: IPv4Header) -> Bool {
        if checksum == 0 { return true }
        var sum = ip.pseudoHeaderChecksum(l4Length: length)
        sum.add(bytes: base, count: length)
        return sum.verifies
    }

}
