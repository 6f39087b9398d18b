import FlexIO
import FlexNIC

/// Core-to-core forwarding of TCP requests under key steering (thesis 5.1): a TCP
/// connection stays with the worker that accepted it, but a request whose key another
/// worker owns is copied into a buffer and sent to that worker over an SPSC ring; the
/// owner runs it on its own partition and sends the reply back in the same buffer.
/// The connection's `ReplyOrder` puts it where it belongs.
///
/// Rings: `requests[origin][owner]` and `replies[owner][origin]`, one producer and one
/// consumer each. An origin keeps at most a ring's capacity of requests in flight per
/// owner, so a reply always finds room.
final class TCPForwarding: @unchecked Sendable {
    let requests: [[DescriptorRing]]
    let replies: [[DescriptorRing]]
    let ringCapacity: Int

    init(workers: Int, ringCapacity: Int = 256) {
        self.ringCapacity = ringCapacity
        requests = (0..<workers).map { _ in (0..<workers).map { _ in DescriptorRing(capacity: ringCapacity) } }
        replies = (0..<workers).map { _ in (0..<workers).map { _ in DescriptorRing(capacity: ringCapacity) } }
    }
}

/// A forwarded request or its reply, as it travels in a `Descriptor`: the buffer (from
/// the origin's pool) holds the request, then the reply; the connection's flow id and
/// the reply's hole go along. A reply that does not fit the buffer is put in memory of
/// its own (`spill`; rare: a large value), which the origin frees.
struct ForwardedRequest {
    var descriptor: Descriptor

    init(buffer: Packet, flow: UInt32, hash: UInt32, sequence: UInt16, binary: Bool) {
        var p = buffer
        p.flow = flow
        descriptor = Descriptor(packet: p, hash: hash, payloadOffset: sequence, detail: binary ? Self.binaryFlag : 0)
    }

    init(_ d: Descriptor) { descriptor = d }

    static let binaryFlag: UInt8 = 1
    static let spilledFlag: UInt8 = 2

    var flow: UInt32 { descriptor.packet.flow }
    var hash: UInt32 { descriptor.hash }
    var sequence: UInt16 { descriptor.payloadOffset }
    var isBinary: Bool { descriptor.detail & Self.binaryFlag != 0 }
    /// The request (on the way out) or the reply (on the way back).
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: descriptor.record ?? descriptor.packet.data, count: Int(descriptor.packet.length))
    }

    /// Replaces the request with its reply.
    mutating func setReply(_ reply: [UInt8]) {
        let target: UnsafeMutableRawPointer
        if reply.count <= Int(descriptor.packet.capacity) {
            target = descriptor.packet.data
        } else {
            target = .allocate(byteCount: reply.count, alignment: 8)
            descriptor.record = target
            descriptor.detail |= Self.spilledFlag
        }
        reply.withUnsafeBytes { if $0.count > 0 { target.copyMemory(from: $0.baseAddress!, byteCount: $0.count) } }
        descriptor.packet.length = UInt32(reply.count)
    }

    /// Frees a spilled reply (the buffer goes back to its pool separately).
    func freeSpill() {
        if descriptor.detail & Self.spilledFlag != 0 { descriptor.record?.deallocate() }
    }
}
