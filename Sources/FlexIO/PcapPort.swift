import Synchronization

/// A port over capture files: receive replays an Ethernet pcap once, transmit appends
/// to another. A record longer than a buffer is counted as a drop and skipped; a
/// corrupt file is counted as a drop and ends the replay (`error` says why).
public final class PcapPort: PacketPort, @unchecked Sendable {
    public let name: String
    public var rxQueueCount: Int { 1 }
    public var txQueueCount: Int { 1 }
    let reader: PcapReader?
    let writer: Mutex<PcapWriter?>
    let pool: BufferPool
    let counters = PortCounters()
    /// Why the replay stopped early, if it did.
    public private(set) var error: PcapError?
    public private(set) var finished = false

    /// `input` is replayed on receive (nil: nothing to receive); `output` collects
    /// transmitted frames (nil: transmitted frames are counted and freed).
    public init(input: String?, output: String?, bufferCount: Int = 1024, bufferSize: Int = 2048) throws {
        name = "pcap:\(input ?? "-")>\(output ?? "-")"
        reader = try input.map { try PcapReader(path: $0) }
        if let r = reader, r.linkType != LinkType.ethernet.rawValue {
            throw PcapError(description: "\(r.path): link type \(r.linkType) is not Ethernet")
        }
        writer = Mutex(try output.map { try PcapWriter(path: $0) })
        pool = BufferPool(bufferCount: bufferCount, bufferSize: bufferSize)
        finished = reader == nil
    }

    public func receive(queue: Int, into batch: PacketBatch) -> Int {
        guard let reader, !finished else { return 0 }
        var n = 0
        var bytes = 0
        while !batch.isFull {
            let record: PcapReader.Record?
            do { record = try reader.next() } catch let e as PcapError {
                error = e; finished = true; counters.countReceiveDrops(1); break
            } catch { finished = true; break }
            guard let record else { finished = true; break }
            guard record.bytes.count <= pool.bufferSize else {
                counters.countReceiveDrops(1)
                continue
            }
            guard pool.allocate(count: 1, into: batch) == 1 else { counters.countReceiveDrops(1); break }
            let p = batch.packets + (batch.count - 1)
            p.pointee.data.copyMemory(from: record.bytes.baseAddress!, byteCount: record.bytes.count)
            p.pointee.length = UInt32(record.bytes.count)
            n += 1
            bytes += record.bytes.count
        }
        counters.countReceived(packets: n, bytes: bytes)
        return n
    }

    public func transmit(queue: Int, _ batch: PacketBatch) -> Int {
        let n = batch.count
        var bytes = 0
        writer.withLock { w in
            for i in 0..<n {
                w?.write(UnsafeRawBufferPointer(batch[i].bytes))
                bytes += Int(batch[i].length)
            }
        }
        counters.countTransmitted(packets: n, bytes: bytes)
        pool.release(batch)
        return n
    }

    /// Flushes and closes the output file.
    public func close() { writer.withLock { $0?.flush(); $0 = nil } }

    public func allocate(count: Int, into batch: PacketBatch) -> Int { pool.allocate(count: count, into: batch) }
    public func release(_ batch: PacketBatch) { pool.release(batch) }
    public var statistics: PortStatistics { counters.snapshot }
}
