/// DCCP header view (RFC 4340 section 5): the generic header with long (X=1, 48-bit
/// sequence numbers, 16 bytes) or short (X=0, 24-bit, 12 bytes) form, the
/// acknowledgement subheader on every type but Request and Data, and the checksum with
/// partial coverage (CsCov, section 9.2).
///
/// Valid once made: the data offset covers the generic header, the ack subheader and
/// the type's fixed fields and lies within the packet; X=0 only on Data, Ack, DataAck.
public struct DCCPHeader: PortHeader {
    public enum PacketType: UInt8, Sendable {
        case request = 0, response = 1, data = 2, ack = 3, dataAck = 4
        case closeRequest = 5, close = 6, reset = 7, sync = 8, syncAck = 9

        /// Whether this type carries an acknowledgement subheader.
        @inlinable public var hasAcknowledgement: Bool { self != .request && self != .data }
        /// Bytes of type-specific fields after the ack subheader (service or reset code).
        @inlinable var fixedFieldLength: Int {
            switch self {
            case .request, .response, .reset: return 4
            default: return 0
            }
        }
    }

    public let base: UnsafeMutableRawPointer
    /// Data offset in bytes: generic header, subheaders and options.
    public let headerLength: Int
    public let type: PacketType
    /// X: long (48-bit) sequence numbers.
    public let extendedSequence: Bool

    /// Length of the generic header for the given X bit.
    @inlinable public static func genericLength(extended: Bool) -> Int { extended ? 16 : 12 }
    /// Length of the acknowledgement subheader for the given X bit.
    @inlinable public static func ackLength(extended: Bool) -> Int { extended ? 8 : 4 }

    @inlinable
    public init(_ bytes: UnsafeMutableRawBufferPointer) throws(WireError) {
        guard bytes.count >= 12, let b = bytes.baseAddress else {
            throw .truncated(.dccp, needed: 12, available: bytes.count)
        }
        let r = UnsafeRawPointer(b)
        let typeByte = r.loadByte(at: 8)
        let x = typeByte & 1 == 1
        guard let t = PacketType(rawValue: (typeByte >> 1) & 0x0F) else {
            throw .unsupported(.dccp, "packet type \((typeByte >> 1) & 0x0F)")
        }
        guard x || t == .data || t == .ack || t == .dataAck else {
            throw .inconsistent(.dccp, "short sequence numbers on a \(t) packet")
        }
        let minimum = Self.genericLength(extended: x) &+ (t.hasAcknowledgement ? Self.ackLength(extended: x) : 0)
            &+ t.fixedFieldLength
        let offset = Int(r.loadByte(at: 4)) &* 4
        guard offset >= minimum else { throw .inconsistent(.dccp, "data offset \(offset) below \(minimum)") }
        guard offset <= bytes.count else { throw .truncated(.dccp, needed: offset, available: bytes.count) }
        base = b
        headerLength = offset
        type = t
        extendedSequence = x
    }

    @inlinable var raw: UnsafeRawPointer { UnsafeRawPointer(base) }

    public var ccVal: UInt8 { raw.loadByte(at: 5) >> 4 }
    /// Checksum coverage: 0 = whole packet, n = header plus (n-1)*4 payload bytes.
    public var checksumCoverage: UInt8 {
        get { raw.loadByte(at: 5) & 0x0F }
        nonmutating set { base.storeByte(raw.loadByte(at: 5) & 0xF0 | newValue & 0x0F, at: 5) }
    }
    public var checksum: UInt16 { raw.loadBE16(at: 6) }

    /// The sequence number (48 or 24 bits).
    public var sequenceNumber: UInt64 {
        get { extendedSequence ? load48(at: 10) : UInt64(load24(at: 9)) }
        nonmutating set { if extendedSequence { store48(newValue, at: 10) } else { store24(UInt32(truncatingIfNeeded: newValue), at: 9) } }
    }

    /// The acknowledgement number, or nil for Request and Data packets.
    public var acknowledgementNumber: UInt64? {
        guard type.hasAcknowledgement else { return nil }
        let g = Self.genericLength(extended: extendedSequence)
        return extendedSequence ? load48(at: g + 2) : UInt64(load24(at: g + 1))
    }

    /// Sets the acknowledgement number; no effect on types without an ack subheader.
    public func setAcknowledgementNumber(_ value: UInt64) {
        guard type.hasAcknowledgement else { return }
        let g = Self.genericLength(extended: extendedSequence)
        if extendedSequence { store48(value, at: g + 2) } else { store24(UInt32(truncatingIfNeeded: value), at: g + 1) }
    }

    /// Bytes the checksum covers for a packet of `packetLength` bytes (header included),
    /// or nil if CsCov asks for more application data than there is (RFC 4340 9.2: the
    /// packet must be ignored).
    @inlinable public func coveredLength(packetLength: Int) -> Int? {
        let cov = Int(checksumCoverage)
        if cov == 0 { return packetLength }
        let data = (cov &- 1) &* 4
        guard data <= packetLength &- headerLength else { return nil }
        return headerLength &+ data
    }

    /// Computes the checksum for a packet of `packetLength` bytes with `ip`'s
    /// pseudo-header (whose length field is the whole DCCP packet, RFC 4340 9.1).
    public func updateChecksum(ip: IPv4Header, packetLength: Int) throws(WireError) {
        guard let covered = coveredLength(packetLength: packetLength) else {
            throw .inconsistent(.dccp, "checksum coverage beyond the packet")
        }
        base.storeBE16(0, at: 6)
        var sum = ip.pseudoHeaderChecksum(l4Length: packetLength)
        sum.add(bytes: base, count: covered)
        base.storeBE16(sum.value, at: 6)
    }

    /// Verifies the checksum; throws for bad coverage or a mismatch.
    public func verifyChecksum(ip: IPv4Header, packetLength: Int) throws(WireError) {
        guard let covered = coveredLength(packetLength: packetLength) else {
            throw .inconsistent(.dccp, "checksum coverage beyond the packet")
        }
        var sum = ip.pseudoHeaderChecksum(l4Length: packetLength)
        sum.add(bytes: base, count: covered)
        guard sum.verifies else { throw .badChecksum(.dccp) }
    }


    /// Writes a header with no options at `base` and returns it. `acknowledgement` is
    /// written when the type has an ack subheader; `serviceCode` fills Request/Response
    /// and Reset's fixed field. Returns the header length through the view.
    @discardableResult
    public static func write(
        at base: UnsafeMutableRawPointer, type: PacketType, extended: Bool = true,
        sourcePort: UInt16, destinationPort: UInt16, sequence: UInt64,
        acknowledgement: UInt64 = 0, serviceCode: UInt32 = 0, checksumCoverage: UInt8 = 0
    ) -> DCCPHeader {
        let length = genericLength(extended: extended) + (type.hasAcknowledgement ? ackLength(extended: extended) : 0)
            + type.fixedFieldLength
        base.initializeMemory(as: UInt8.self, repeating: 0, count: length)
        base.storeBE16(sourcePort, at: 0)
        base.storeBE16(destinationPort, at: 2)
        base.storeByte(UInt8(length / 4), at: 4)
        base.storeByte(checksumCoverage & 0x0F, at: 5)
        base.storeByte(type.rawValue << 1 | (extended ? 1 : 0), at: 8)
        let h = DCCPHeader(unchecked: base, headerLength: length, type: type, extended: extended)
        h.sequenceNumber = sequence
        h.setAcknowledgementNumber(acknowledgement)
        if type.fixedFieldLength > 0 { base.storeBE32(serviceCode, at: length - 4) }
        return h
    }

    /// A view of a header that was validated before (by `init(_:)`, or written by
    /// `write`): nothing is checked.
    @inlinable public init(unchecked base: UnsafeMutableRawPointer, headerLength: Int, type: PacketType, extended: Bool) {
        self.base = base
        self.headerLength = headerLength
        self.type = type
        self.extendedSequence = extended
    }

    /// Rewrites the type in place. Used by ack generation, which turns a Data packet
    /// (no ack subheader) into an Ack only when the header has room for one; callers
    /// check `headerLength`.
    public func setType(_ t: PacketType) {
        base.storeByte(raw.loadByte(at: 8) & 0xE1 | t.rawValue << 1, at: 8)
    }

    /// Rewrites the DCCP Data or DataAck packet (X=1) at `base` into its Ack in place
    /// (thesis fig. 5.4): type Ack, acknowledgement number = the packet's sequence
    /// number, no options, no payload, CsCov 0. Ports and the checksum are left to the
    /// caller. Returns the Ack's length (24 bytes), or nil if the packet is not a long
    /// Data/DataAck or `capacity` bytes from `base` cannot hold the Ack.
    public static func rewriteAsAck(at base: UnsafeMutableRawPointer, capacity: Int) -> Int? {
        let r = UnsafeRawPointer(base)
        let typeByte = r.loadByte(at: 8)
        let type = (typeByte >> 1) & 0x0F
        guard typeByte & 1 == 1,
              type == PacketType.data.rawValue || type == PacketType.dataAck.rawValue else { return nil }
        let length = genericLength(extended: true) + ackLength(extended: true)
        guard length <= capacity else { return nil }
        base.storeByte(UInt8(length / 4), at: 4)
        base.storeByte(0, at: 5)  // CCVal 0, CsCov 0
        base.storeByte(typeByte & 0xE1 | PacketType.ack.rawValue << 1, at: 8)
        base.storeBE16(0, at: 16)  // ack subheader: reserved
        (base + 18).copyMemory(from: base + 10, byteCount: 6)
        return length
    }

    @inlinable func load48(at o: Int) -> UInt64 {
        UInt64(raw.loadBE16(at: o)) << 32 | UInt64(raw.loadBE32(at: o + 2))
    }
    @inlinable func store48(_ v: UInt64, at o: Int) {
        base.storeBE16(UInt16(truncatingIfNeeded: v >> 32), at: o)
        base.storeBE32(UInt32(truncatingIfNeeded: v), at: o + 2)
    }
    @inlinable func load24(at o: Int) -> UInt32 {
        UInt32(raw.loadByte(at: o)) << 16 | UInt32(raw.loadBE16(at: o + 1))
    }
    @inlinable func store24(_ v: UInt32, at o: Int) {
        base.storeByte(UInt8(truncatingIfNeeded: v >> 16), at: o)
        base.storeBE16(UInt16(truncatingIfNeeded: v), at: o + 1)
    }
}
