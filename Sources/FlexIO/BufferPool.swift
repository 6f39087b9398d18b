import CFlexSys
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A fixed set of equal-sized, 64-byte-aligned packet buffers for ports that do not
/// bring their own (kernel sockets, pcap, memory): DPDK's mempool in miniature.
///
/// Allocation and release take the pool's lock once per batch, never per packet. The
/// number of buffers is the port's memory limit: when none is free, receive stops and
/// the port counts a drop instead of growing.
public final class BufferPool: @unchecked Sendable {
    public let bufferSize: Int
    public let bufferCount: Int
    let region: UnsafeMutableRawPointer
    /// Free buffer indices, a stack; guarded by the lock.
    let free: Mutex<FreeStack>

    struct FreeStack: ~Copyable {
        let slots: UnsafeMutablePointer<Int32>
        var top: Int
    }

    public init(bufferCount: Int, bufferSize: Int = 2048) {
        precondition(bufferCount > 0 && bufferSize >= 64, "a pool needs buffers of at least 64 bytes")
        self.bufferCount = bufferCount
        self.bufferSize = (bufferSize + 63) & ~63
        guard let region = cflex_region_alloc(bufferCount * self.bufferSize, 1) else {
            fatalError("BufferPool: cannot allocate \(bufferCount) buffers of \(bufferSize) bytes")
        }
        self.region = region
        let slots = UnsafeMutablePointer<Int32>.allocate(capacity: bufferCount)
        for i in 0..<bufferCount { slots[i] = Int32(bufferCount - 1 - i) }
        free = Mutex(FreeStack(slots: slots, top: bufferCount))
    }

    deinit {
        free.withLock { $0.slots.deallocate() }
        cflex_region_free(region, bufferCount * bufferSize)
    }

    /// Buffers not handed out.
    public var available: Int { free.withLock { $0.top } }

    /// Appends `count` empty packets to `batch` (all or none); returns how many.
    /// `headroom` bytes are left in front of `data` for headers written later.
    public func allocate(count: Int, into batch: PacketBatch, headroom: Int = 0) -> Int {
        take(count, into: batch, headroom: headroom, partly: false)
    }

    /// Appends up to `count` empty packets to `batch`, as many as the pool holds;
    /// returns how many.
    public func allocate(upTo count: Int, into batch: PacketBatch, headroom: Int = 0) -> Int {
        take(count, into: batch, headroom: headroom, partly: true)
    }

    func take(_ count: Int, into batch: PacketBatch, headroom: Int, partly: Bool) -> Int {
        precondition(headroom < bufferSize)
        let wanted = min(count, batch.freeSpace)
        guard wanted > 0 else { return 0 }
        let n: Int = free.withLock { stack in
            let n = partly ? min(wanted, stack.top) : (stack.top >= wanted ? wanted : 0)
            for i in 0..<n {
                let index = Int(stack.slots[stack.top - 1 - i])
                let base = region + index &* bufferSize
                batch.packets[batch.count + i] = Packet(
                    owner: base, data: base + headroom, length: 0, capacity: UInt32(bufferSize - headroom))
            }
            stack.top -= n
            return n
        }
        batch.count += n
        return n
    }

    /// Returns the buffers of `packets[0..<count]` to the pool.
    public func release(_ packets: UnsafePointer<Packet>, count: Int) {
        guard count > 0 else { return }
        free.withLock { stack in
            for i in 0..<count {
                guard let owner = packets[i].owner else { continue }
                let index = (owner - region) / bufferSize
                precondition(index >= 0 && index < bufferCount && stack.top < bufferCount,
                             "BufferPool: released a buffer it does not own, or twice")
                stack.slots[stack.top] = Int32(index)
                stack.top += 1
            }
        }
    }

    public func release(_ batch: PacketBatch) {
        release(batch.packets, count: batch.count)
        batch.removeAll()
    }
}
