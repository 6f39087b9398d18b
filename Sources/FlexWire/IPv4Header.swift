/// An IPv4 address as a host-order integer (10.0.0.1 is 0x0A000001).
public struct IPv4Address: Hashable, Comparable, Sendable, CustomStringConvertible {
    public var value: UInt32

    @inlinable public init(_ value: UInt32) { self.value = value }
    public init(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) {
        value = UInt32(a) << 24 | UInt32(b) << 16 | UInt32(c) << 8 | UInt32(d)
    }

    /// Parses dotted-quad text; nil for anything else.
    public init?(_ text: String) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var v: UInt32 = 0
        for p in parts {
            guard !p.isEmpty, p.count <= 3, let n = UInt8(p) else { return nil }
            v = v << 8 | UInt32(n)
        }
        value = v
    }

    public static func < (a: IPv4Address, b: IPv4Address) -> Bool { a.value < b.value }

    public var description: String {
        "\(value >> 24).\(value >> 16 & 255).\(value >> 8 & 255).\(value & 255)"
    }

    public static let any = IPv4Address(0)
    public static let loopback = IPv4Address(127, 0, 0, 1)
}

/// IPv4 header view (RFC 791), options included. Valid once made: version 4, IHL in
/// 5...15 and within the buffer, total length within the buffer and covering the header.
public struct IPv4Header {
    public static let minimumLength = 20

    public enum Proto: UInt8, Sendable { case icmp = 1, tcp = 6, udp = 17, dccp = 33 }

    public let base: UnsafeMutableRawPointer
    /// Header length in bytes (IHL x 4).
    public let headerLength: Int

    /// Views an IPv4 header at the start of `bytes`, checking version, IHL and total
    /// length against the buffer. `verifyChecksum` also checks the header checksum.
    @inlinable @inline(__always)
    public init(_ bytes: UnsafeMutableRawBufferPointer, verifyChecksum: Bool = false) throws(WireError) {
        guard bytes.count >= Self.minimumLength, let b = bytes.baseAddress else {
            throw .truncated(.ipv4, needed: Self.minimumLength, available: bytes.count)
        }
        let vihl = b.load(as: UInt8.self)
        guard vihl >> 4 == 4 else { throw .inconsistent(.ipv4, "version \(vihl >> 4)") }
        let ihl = Int(vihl & 0x0F) &* 4
        guard ihl >= Self.minimumLength else { throw .inconsistent(.ipv4, "header length \(ihl)") }
        guard ihl <= bytes.count else { throw .truncated(.ipv4, needed: ihl, available: bytes.count) }
        let total = Int(UnsafeRawPointer(b).loadBE16(at: 2))
        guard total >= ihl else { throw .inconsistent(.ipv4, "total length \(total) below header length \(ihl)") }
        guard total <= bytes.count else { throw .truncated(.ipv4, needed: total, available: bytes.count) }
        base = b
        headerLength = ihl
        if verifyChecksum && !Self.checksumVerifies(b, headerLength: ihl) { throw .badChecksum(.ipv4) }
    }

    @inlinable var raw: UnsafeRawPointer { UnsafeRawPointer(base) }

    /// Header checksum check; the common 20-byte header is summed as five 32-bit words.
    @inlinable @inline(__always)
    static func checksumVerifies(_ b: UnsafeRawPointer, headerLength: Int) -> Bool {
        guard headerLength == minimumLength else {
            var sum = InternetChecksum()
            sum.add(bytes: b, count: headerLength)
            return sum.verifies
        }
        return foldedSum(b) == 0xFFFF
    }

    /// The ones' complement sum of a 20-byte header's 16-bit words, in the machine's
    /// byte order (RFC 1071: the sum does not depend on it; stored back in that order,
    /// its complement is the checksum in network order).
    @inlinable @inline(__always)
    static func foldedSum(_ b: UnsafeRawPointer) -> UInt16 {
        var acc: UInt64 = 0
        for i in 0..<5 { acc &+= UInt64(b.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)) }
        acc = (acc & 0xFFFF_FFFF) &+ (acc >> 32)
        acc = (acc & 0xFFFF) &+ (acc >> 16)
        acc = (acc & 0xFFFF) &+ (acc >> 16)
        acc = (acc & 0xFFFF) &+ (acc >> 16)
        return UInt16(truncatingIfNeeded: acc)
    }

    public var typeOfService: UInt8 { raw.loadByte(at: 1) }
    @inlinable public var totalLength: Int { Int(raw.loadBE16(at: 2)) }
    public var identification: UInt16 { raw.loadBE16(at: 4) }
    /// Flags and fragment offset; non-zero offset or MF means a fragment.
    @inlinable public var isFragment: Bool { raw.loadBE16(at: 6) & 0x3FFF != 0 }
    public var timeToLive: UInt8 {
        get { raw.loadByte(at: 8) }
        nonmutating set { base.storeByte(newValue, at: 8) }
    }
    @inlinable public var protocolNumber: UInt8 { raw.loadByte(at: 9) }
    public var checksum: UInt16 { raw.loadBE16(at: 10) }
    @inlinable public var source: IPv4Address {
        get { IPv4Address(raw.loadBE32(at: 12)) }
        nonmutating set { base.storeBE32(newValue.value, at: 12) }
    }
    @inlinable public var destination: IPv4Address {
        get { IPv4Address(raw.loadBE32(at: 16)) }
        nonmutating set { base.storeBE32(newValue.value, at: 16) }
    }
    /// The option bytes between the fixed header and `headerLength`.
    public var options: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + Self.minimumLength, count: headerLength - Self.minimumLength)
    }

    /// Swaps source and destination in place; the header checksum is unchanged by a swap.
    @inlinable public func swapAddresses() {
        base.swapFields(UInt32.self, at: 12, 16)
    }

    /// Recomputes the header checksum over `headerLength` bytes.
    @inlinable public func updateChecksum() {
        base.storeBE16(0, at: 10)
        if headerLength == Self.minimumLength {
            base.storeBytes(of: ~Self.foldedSum(base), toByteOffset: 10, as: UInt16.self)
            return
        }
        var sum = InternetChecksum()
        sum.add(bytes: base, count: headerLength)
        base.storeBE16(sum.value, at: 10)
    }

    /// The transport pseudo-header sum (RFC 793/768/4340) for `l4Length` bytes.
    @inlinable public func pseudoHeaderChecksum(l4Length: Int) -> InternetChecksum {
        var sum = InternetChecksum()
        sum.add(raw.loadBE32(at: 12))
        sum.add(raw.loadBE32(at: 16))
        sum.add(UInt16(protocolNumber))
        sum.add(UInt16(truncatingIfNeeded: l4Length))
        return sum
    }

    /// Writes a fresh 20-byte header (no options) at `base` and returns it; without
    /// `checksum` its checksum is left 0 (a frame that never leaves this process).
    @discardableResult
    public static func write(
        at base: UnsafeMutableRawPointer, totalLength: Int, protocolNumber: UInt8,
        source: IPv4Address, destination: IPv4Address, ttl: UInt8 = 64, identification: UInt16 = 0,
        checksum: Bool = true
    ) -> IPv4Header {
        base.storeByte(0x45, at: 0)
        base.storeByte(0, at: 1)
        base.storeBE16(UInt16(truncatingIfNeeded: totalLength), at: 2)
        base.storeBE16(identification, at: 4)
        base.storeBE16(0x4000, at: 6)  // don't fragment
        base.storeByte(ttl, at: 8)
        base.storeByte(protocolNumber, at: 9)
        base.storeBE32(source.value, at: 12)
        base.storeBE32(destination.value, at: 16)
        let h = IPv4Header(unchecked: base, headerLength: 20)
        if checksum { h.updateChecksum() } else { base.storeBE16(0, at: 10) }
        return h
    }

    /// A view over a header already known to be valid (built here, or parsed before).
    @inlinable public init(unchecked base: UnsafeMutableRawPointer, headerLength: Int) {
        self.base = base
        self.headerLength = headerLength
    }
}
