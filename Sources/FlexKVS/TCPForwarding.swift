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
    typealias Ring = SPSCRing<ForwardedRequest>
    let requests: [[Ring]]
    let replies: [[Ring]]
    let ringCapacity: Int

    init(workers: Int, ringCapacity: Int = 256) {
        self.ringCapacity = ringCapacity
        requests = (0..<workers).map { _ in (0..<workers).map { _ in Ring(capacity: ringCapacity) } }
        replies = (0..<workers).map { _ in (0..<workers).map { _ in Ring(capacity: ringCapacity) } }
    }
}

/// A forwarded request or its reply, the element of the forwarding rings: the buffer
/// (from the origin's pool) holds the request, then the reply; the connection's flow
/// id and the reply's place in the connection's order go along. A reply that does not
/// fit the buffer is put in memory of its own (`spill`; rare: a large value), which
/// the origin frees.
struct ForwardedRequest: BitwiseCopyable {
    /// Owned by the origin's forwarding pool, whichever worker holds the element.
    var buffer: Packet
    let flow: UInt32
    let hash: UInt32
    /// The reply's hole in the connection's `ReplyOrder`.
    let sequence: UInt16
    let isBinary: Bool
    /// The reply, when it is longer than the buffer (`buffer.length` bytes); else nil.
    var spill: UnsafeMutableRawPointer?

    init(buffer: Packet, flow: UInt32, hash: UInt32, sequence: UInt16, binary: Bool) {
        self.buffer = buffer
        self.flow = flow
        self.hash = hash
        self.sequence = sequence
        isBinary = binary
    }

    /// The request (on the way out) or the reply (on the way back).
    var bytes: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: spill ?? buffer.data, count: Int(buffer.length))
    }

    /// Replaces the request with its reply.
    mutating func setReply(_ reply: borrowing SessionBytes) {
        let target: UnsafeMutableRawPointer
        if reply.count <= Int(buffer.capacity) {
            target = buffer.data
        } else {
            target = .allocate(byteCount: reply.count, alignment: 8)
            spill = target
        }
        reply.withUnsafeBytes { if let source = $0.baseAddress { target.copyMemory(from: source, byteCount: $0.count) } }
        buffer.length = UInt32(reply.count)
    }

    /// Frees a spilled reply (the buffer goes back to its pool separately).
    func freeSpill() { spill?.deallocate() }
}
