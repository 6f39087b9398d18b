import FlexIO
import FlexWire

/// Header fields of a packet the steering pipeline delivered to a queue, read in place
/// at the offsets the pipeline recorded (`l3Offset`, `l4Offset`) instead of parsing
/// the frame again. Valid only for such packets: IPv4 frames carrying UDP or TCP that
/// `ParsedFrame` accepted.
extension Packet {
    /// Where a reply to this packet goes: addresses, ports and MACs swapped.
    @inlinable public var replyEndpoints: FrameBuilder.Endpoints {
        FrameBuilder.Endpoints(replyingTo: data, l3Offset: Int(l3Offset), l4Offset: Int(l4Offset))
    }

    /// A TCP segment's flags (FIN, SYN, RST, PSH, ACK, URG).
    @inlinable public var tcpFlags: UInt8 { data.load(fromByteOffset: Int(l4Offset) + 13, as: UInt8.self) }
}
