import FlexWire

/// memcached's UDP frame header (protocol.txt, "UDP protocol"): 8 bytes before every
/// datagram's payload, in both directions: request id, sequence number, datagram
/// count, reserved (0), each a big-endian 16-bit word. A request is one datagram
/// (sequence 0 of 1); a reply is split into as many datagrams as it needs, each
/// carrying the request's id. The one place flexkvs reads or writes the header: the
/// steering programs (`KVSPrograms`), the request handler and the reply writer
/// (`Worker`) all go through it.
public struct MemcachedUDPFrame {
    static let headerLength = 8
    /// Offset of the 32-bit word holding the sequence number and the datagram count:
    /// 1 (sequence 0 of 1 datagram) for a request the server takes.
    static let sequenceAndCountOffset = 2
    /// The largest request datagram (the most IPv4 can carry; memcached reads up to
    /// 64 KB).
    static let maximumRequest = 65_507
    /// Reply bytes per datagram (memcached keeps datagrams under 1400 bytes).
    static let replyBytesPerDatagram = 1400 - headerLength

    /// The datagram's UDP payload: the header, then the request.
    let bytes: UnsafeRawBufferPointer

    /// A view of `payload`; nil if it is too short to hold the header and a request.
    public init?(_ payload: UnsafeRawBufferPointer) {
        guard payload.count > Self.headerLength else { return nil }
        bytes = payload
    }

    var requestID: UInt16 { bytes.baseAddress!.loadBE16(at: 0) }
    public var datagrams: UInt16 { bytes.baseAddress!.loadBE16(at: 4) }
    /// Whether the request is whole in this datagram (as memcached, the sequence
    /// number is not looked at; only the count must be 1).
    public var isWhole: Bool { datagrams == 1 }
    /// The request after the header.
    public var request: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[Self.headerLength...]) }

    /// Datagrams a reply of `length` bytes takes (at least one).
    public static func datagrams(forReply length: Int) -> Int { max(1, (length + replyBytesPerDatagram - 1) / replyBytesPerDatagram) }

    /// Writes the header of reply datagram `sequence` of `count` to request `requestID`.
    static func writeHeader(at p: UnsafeMutableRawPointer, requestID: UInt16, sequence: Int, count: Int) {
        p.storeBE16(requestID, at: 0)
        p.storeBE16(UInt16(sequence), at: 2)
        p.storeBE16(UInt16(count), at: 4)
        p.storeBE16(0, at: 6)
    }
}
