import Synchronization

/// An in-memory port: frames injected by a test or a generator are received on a queue;
/// transmitted frames are kept for inspection. Buffers come from its own pool, so its
/// memory is bounded: injecting into a full pool fails and is counted as a drop.
public final class MemoryPort: PacketPort, @unchecked Sendable {
    public let name: String
    public let rxQueueCount: Int
    public let txQueueCount: Int
    public let pool: BufferPool
    let counters = PortCounters()
    let pending: [InjectedFrames]
    let sent = Mutex<[[UInt8]]>([])
    /// Transmitted frames kept at most; older ones are dropped from the record.
    public let transmitRecordLimit: Int

    public init(name: String = "memory", queues: Int = 1, bufferCount: Int = 4096, bufferSize: Int = 2048,
                transmitRecordLimit: Int = 1 << 16) {
        precondition(queues > 0)
        self.name = name
        rxQueueCount = queues
        txQueueCount = queues
        pool = BufferPool(bufferCount: bufferCount, bufferSize: bufferSize)
        pending = (0..<queues).map { _ in InjectedFrames() }
        self.transmitRecordLimit = transmitRecordLimit
    }

    /// Queues `frame` for receive on `queue`; false (and a counted drop) if no buffer is
    /// free or the frame does not fit one.
    @discardableResult
    public func inject(_ frame: some Collection<UInt8>, queue: Int = 0) -> Bool {
        let one = PacketBatch(capacity: 1)
        guard frame.count <= pool.bufferSize, pool.allocate(count: 1, into: one) == 1 else {
            counters.countReceiveDrops(1)
            return false
        }
        var p = one[0]
        UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)).copyBytes(from: frame)
        p.length = UInt32(frame.count)
        pending[queue].frames.withLock { $0.append(p) }
        return true
    }

    /// Frames transmitted so far, oldest first; empties the record.
    public func takeTransmitted() -> [[UInt8]] {
        sent.withLock { frames in defer { frames.removeAll() }; return frames }
    }

    public func receive(queue: Int, into batch: PacketBatch) -> Int {
        let n = pending[queue].frames.withLock { q -> Int in
            let n = min(q.count, batch.freeSpace)
            for i in 0..<n { batch.append(q[i]) }
            q.removeFirst(n)
            return n
        }
        var bytes = 0
        for i in (batch.count - n)..<batch.count { bytes += Int(batch[i].length) }
        counters.countReceived(packets: n, bytes: bytes)
        return n
    }

    public func transmit(queue: Int, _ batch: PacketBatch) -> Int {
        let n = batch.count
        var bytes = 0
        sent.withLock { frames in
            for i in 0..<n {
                frames.append(batch[i].byteArray)
                bytes += Int(batch[i].length)
            }
            if frames.count > transmitRecordLimit { frames.removeFirst(frames.count - transmitRecordLimit) }
        }
        counters.countTransmitted(packets: n, bytes: bytes)
        pool.release(batch)
        return n
    }

    public func allocate(count: Int, into batch: PacketBatch) -> Int { pool.allocate(count: count, into: batch) }
    public func release(_ batch: PacketBatch) { pool.release(batch) }
    public var statistics: PortStatistics { counters.snapshot }
}

/// Frames injected on one queue, waiting to be received.
final class InjectedFrames: Sendable {
    let frames = Mutex<[Packet]>([])
}
