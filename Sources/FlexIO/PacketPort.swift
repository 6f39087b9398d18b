/// A source and sink of Ethernet frames with one or more queues: a DPDK ethdev, a
/// kernel socket presented as frames, a pcap file, or memory. The steering layer runs
/// the same program over any of them.
///
/// Threading: each rx queue is polled by one thread and each tx queue is fed by one
/// thread; `release` may be called from any thread. Ownership: every packet a port
/// hands out goes back to it exactly once, by `transmit` (sent packets are the port's
/// again) or by `release`.
public protocol PacketPort: AnyObject, Sendable {
    /// A name for logs and stats (`dpdk:net_ring0`, `udp:127.0.0.1:11211`).
    var name: String { get }
    var rxQueueCount: Int { get }
    var txQueueCount: Int { get }

    /// Appends up to `batch.freeSpace` received frames; returns how many. Never blocks.
    func receive(queue: Int, into batch: PacketBatch) -> Int
    /// Sends frames from the front of `batch`. Frames it took (sent, or unsendable on
    /// this port and counted as transmit errors) are removed and counted in the result;
    /// frames it could not take now stay in the batch, still the caller's.
    func transmit(queue: Int, _ batch: PacketBatch) -> Int
    /// Appends `count` empty buffers (length 0) for building frames; returns how many
    /// it could get (all or none).
    func allocate(count: Int, into batch: PacketBatch) -> Int
    /// Frees every packet in `batch` and empties it.
    func release(_ batch: PacketBatch)
    /// Frees one packet (slow paths; hot paths release whole batches).
    func release(_ packet: Packet)
    /// Waits until `queue` may have frames or `timeoutMilliseconds` passes. Ports whose
    /// receive is a cheap poll (DPDK) return at once.
    func wait(queue: Int, timeoutMilliseconds: Int)
    /// Counters since the port was opened.
    var statistics: PortStatistics { get }
    /// A file descriptor that polls readable when `queue` may have frames, for waiting
    /// on several ports at once; nil for ports that are polled (DPDK, memory).
    func readinessDescriptor(queue: Int) -> Int32?
    /// An epoll set of `queue`'s own descriptors (a TCP port's connections) that the
    /// one loop receiving from `queue` may wait on in place of its own, adding its
    /// descriptors under tokens `CoreLoop.isLoopToken` tells apart (which the port
    /// ignores): then one wait answers for the loop and for the port's connections,
    /// instead of a wait on the loop's set and another on the port's. Nil: the port
    /// has no such set, or does not lend it.
    func lendableEventSet(queue: Int) -> Int32?
    /// The events for `queue` a wait on its lent set returned (at most 64): the next
    /// receive takes them in place of a wait of its own. Level-triggered: an event
    /// never taken is returned again by the next wait, so nothing is lost if a
    /// receive does not come.
    func deliverEvents(queue: Int, tokens: UnsafePointer<UInt64>, masks: UnsafePointer<UInt32>, count: Int)
}

extension PacketPort {
    public func release(_ packet: Packet) {
        let one = PacketBatch(capacity: 1)
        one.append(packet)
        release(one)
    }
    public func wait(queue: Int, timeoutMilliseconds: Int) {}
    public func readinessDescriptor(queue: Int) -> Int32? { nil }
    public func lendableEventSet(queue: Int) -> Int32? { nil }
    public func deliverEvents(queue: Int, tokens: UnsafePointer<UInt64>, masks: UnsafePointer<UInt32>, count: Int) {}
}

/// What a port counted: frames and bytes each way and what it had to drop.
public struct PortStatistics: Sendable, Equatable, CustomStringConvertible {
    public var receivedPackets: UInt64 = 0
    public var receivedBytes: UInt64 = 0
    public var transmittedPackets: UInt64 = 0
    public var transmittedBytes: UInt64 = 0
    /// Frames lost on receive: no buffer, truncated datagram, device misses.
    public var receiveDrops: UInt64 = 0
    /// Frames the port could not send (malformed for this port, device errors).
    public var transmitErrors: UInt64 = 0

    public init() {}

    public var description: String {
        "rx \(receivedPackets) pkts \(receivedBytes) B, tx \(transmittedPackets) pkts \(transmittedBytes) B, rx drops \(receiveDrops), tx errors \(transmitErrors)"
    }
}

/// Errors opening or configuring a port.
public struct PortError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
