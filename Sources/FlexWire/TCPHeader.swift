/// TCP header view (RFC 793), options included: data offset 5...15 within the segment.
public struct TCPHeader: PortHeader {
    public static let minimumLength = 20

    public struct Flags: OptionSet, Sendable {
        public let rawValue: UInt8
        @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
        @inlinable public static var fin: Flags { Flags(rawValue: 0x01) }
        @inlinable public static var syn: Flags { Flags(rawValue: 0x02) }
        @inlinable public static var rst: Flags { Flags(rawValue: 0x04) }
        @inlinable public static var psh: Flags { Flags(rawValue: 0x08) }
        @inlinable public static var ack: Flags { Flags(rawValue: 0x10) }
        @inlinable public static var urg: Flags { Flags(rawValue: 0x20) }
    }

    public let base: UnsafeMutableRawPointer
    /// Header length in bytes (data offset x 4).
    public let headerLength: Int

    @inlinable @inline(__always)
    public init(_ bytes: UnsafeMutableRawBufferPointer) throws(WireError) {
        guard bytes.count >= Self.minimumLength, let b = bytes.baseAddress else {
            throw .truncated(.tcp, needed: Self.minimumLength, available: bytes.count)
        }
        let off = Int(b.load(fromByteOffset: 12, as: UInt8.self) >> 4) &* 4
        guard off >= Self.minimumLength else { throw .inconsistent(.tcp, "data offset \(off)") }
        guard off <= bytes.count else { throw .truncated(.tcp, needed: off, available: bytes.count) }
        base = b
        headerLength = off
    }

    @inlinable var raw: UnsafeRawPointer { UnsafeRawPointer(base) }

    public var sequenceNumber: UInt32 {
        get { raw.loadBE32(at: 4) }
        nonmutating set { base.storeBE32(newValue, at: 4) }
    }
    public var acknowledgementNumber: UInt32 {
        get { raw.loadBE32(at: 8) }
        nonmutating set { base.storeBE32(newValue, at: 8) }
    }
    @inlinable public var flags: Flags {
        get { Flags(rawValue: raw.loadByte(at: 13) & 0x3F) }
        nonmutating set { base.storeByte(newValue.rawValue, at: 13) }
    }
    public var window: UInt16 {
        get { raw.loadBE16(at: 14) }
        nonmutating set { base.storeBE16(newValue, at: 14) }
    }
    public var checksum: UInt16 { raw.loadBE16(at: 16) }
    public var options: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + Self.minimumLength, count: headerLength - Self.minimumLength)
    }

    /// Checksums `segmentLength` bytes (header and payload) with `ip`'s pseudo-header.
    @inlinable public func updateChecksum(ip: IPv4Header, segmentLength: Int) {
        base.storeBE16(0, at: 16)
        var sum = ip.pseudoHeaderChecksum(l4Length: segmentLength)
        sum.add(bytes: base, count: segmentLength)
        base.storeBE16(sum.value, at: 16)
    }

    @inlinable public func verifyChecksum(ip: IPv4Header, segmentLength: Int) -> Bool {
        var sum = ip.pseudoHeaderChecksum(l4Length: segmentLength)
        sum.add(bytes: base, count: segmentLength)
        return sum.verifies
    }


    /// Writes a 20-byte header with no options at `base`.
    @discardableResult
    public static func write(at base: UnsafeMutableRawPointer, sourcePort: UInt16, destinationPort: UInt16,
                             sequence: UInt32 = 0, acknowledgement: UInt32 = 0,
                             flags: Flags = [.ack, .psh], window: UInt16 = 65535) -> TCPHeader {
        base.storeBE16(sourcePort, at: 0)
        base.storeBE16(destinationPort, at: 2)
        base.storeBE32(sequence, at: 4)
        base.storeBE32(acknowledgement, at: 8)
        base.storeByte(5 << 4, at: 12)
        base.storeByte(flags.rawValue, at: 13)
        base.storeBE16(window, at: 14)
        base.storeBE32(0, at: 16)  // checksum, urgent pointer
        return TCPHeader(unchecked: base, headerLength: 20)
    }

    @inlinable public init(unchecked base: UnsafeMutableRawPointer, headerLength: Int) {
        self.base = base
        self.headerLength = headerLength
    }
}
