import FlexIO
import FlexWire

/// The DCCP header of a frame as the pipeline reads it: over IPv4 (protocol 33), or
/// inside a UDP datagram when the program says UDP carries DCCP
/// (`SteeringProgram.dccpInUDP`, as `FrameBuilder.dccpData` encapsulates it). A view
/// into the packet: fields are read from the buffer when asked for.
///
/// Invariants: made only after `DCCPHeader` validated the header, so `offset + length`
/// lies within the frame, the data offset (`headerLength`) within `length`, and the
/// type is one RFC 4340 defines; `sequence` is meaningful only when `extended`.
public struct DCCPView {
    /// The header's first byte.
    public let base: UnsafeMutableRawPointer
    /// Offset of the header in the frame.
    public let offset: Int
    /// Bytes from the header to the end of the DCCP packet.
    public let length: Int

    /// The frame's DCCP header: nil if it carries none, `.failure` if it carries a
    /// malformed one.
    @inline(__always)
    static func read(_ p: Packet, _ f: ParsedFrame, inUDP: Bool) -> Result<DCCPView, WireError>? {
        guard f.layers.contains(.ipv4), let (offset, length) = f.dccpPacket(udpEncapsulated: inUDP) else { return nil }
        do throws(WireError) {
            _ = try DCCPHeader(UnsafeMutableRawBufferPointer(start: p.data + offset, count: length))
        } catch {
            return .failure(error)
        }
        return .success(DCCPView(base: p.data + offset, offset: offset, length: length))
    }

    @inline(__always) init(base: UnsafeMutableRawPointer, offset: Int, length: Int) {
        self.base = base
        self.offset = offset
        self.length = length
    }

    @inline(__always) var typeByte: UInt8 { UnsafeRawPointer(base).loadByte(at: 8) }
    @inline(__always) public var type: UInt8 { (typeByte >> 1) & 0x0F }
    @inline(__always) public var extended: Bool { typeByte & 1 == 1 }
    @inline(__always) public var headerLength: Int { Int(UnsafeRawPointer(base).loadByte(at: 4)) &* 4 }
    @inline(__always) public var sourcePort: UInt16 { UnsafeRawPointer(base).loadBE16(at: 0) }
    @inline(__always) public var destinationPort: UInt16 { UnsafeRawPointer(base).loadBE16(at: 2) }
    @inline(__always) public var header: DCCPHeader {
        DCCPHeader(unchecked: base, headerLength: headerLength, type: DCCPHeader.PacketType(rawValue: type)!, extended: extended)
    }
    /// The sequence number (48 or 24 bits).
    @inline(__always) public var sequence: UInt64 { header.sequenceNumber }
    /// The acknowledgement number; 0 on types without an acknowledgement subheader.
    @inline(__always) public var acknowledgement: UInt64 { header.acknowledgementNumber ?? 0 }

    /// The payload after the header.
    public var payload: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + headerLength, count: length &- headerLength)
    }
}
