import CFlexSys
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// All item memory: `-m` megabytes cut into fixed-size segments, handed to partitions
/// one at a time (a lock per segment, not per item) and returned when a partition evicts
/// or compacts one. The region is reserved up front and touched only as segments fill,
/// so memory in use never exceeds the limit plus the fixed tables. Segments of whole huge
/// pages (2 MiB or larger) get transparent huge pages (`cflex_region_alloc`): a request
/// touches items scattered across the region, and with 4 KiB pages each would be a TLB
/// miss. Smaller segments do not: giving one back would split its huge page, and the
/// kernel may fill the hole again (khugepaged), so an evicted segment would go on
/// costing memory.
public final class SegmentPool: @unchecked Sendable {
    public let segmentSize: Int
    /// Segments reserved: the most `segmentLimit` can be raised to.
    public let segmentCount: Int
    let memory: UnsafeMutableRawPointer
    let free: Mutex<[Int32]>
    /// Bytes of dead items per segment (written by the owning partition).
    let freedBytes: UnsafeMutablePointer<Atomic<UInt32>>

    /// `memoryLimit` bytes of segments may be held at first; `reserve` bytes of address
    /// space are reserved (not touched) so the limit can be raised to that at run time.
    public init(memoryLimit: Int, segmentSize: Int, reserve: Int = 0) {
        precondition(segmentSize >= 4096 && segmentSize & (segmentSize - 1) == 0, "segment size: a power of two >= 4 KiB")
        self.segmentSize = segmentSize
        let limit = max(2, memoryLimit / segmentSize)
        segmentCount = max(limit, reserve / segmentSize)
        let bytes = segmentCount * segmentSize
        let wholeHugePages = segmentSize % Int(CFLEX_HUGE_PAGE) == 0
        guard let m = cflex_region_alloc(bytes, wholeHugePages ? 1 : 0) else { fatalError("SegmentPool: cannot reserve \(bytes) bytes") }
        memory = m
        self.limit = Atomic(limit)
        free = Mutex((0..<Int32(segmentCount)).reversed())
        freedBytes = .allocate(capacity: segmentCount)
        for i in 0..<segmentCount { (freedBytes + i).initialize(to: Atomic(0)) }
    }

    deinit {
        cflex_region_free(memory, segmentCount * segmentSize)
        freedBytes.deinitialize(count: segmentCount)
        freedBytes.deallocate()
    }

    @inline(__always) public func base(of segment: Int) -> UnsafeMutableRawPointer { memory + segment &* segmentSize }

    /// Where the record `ref` names lies (its segment's base plus its offset).
    @inline(__always) func pointer(to ref: ItemRef) -> UnsafeMutableRawPointer {
        base(of: ItemLog.segment(of: ref)) + Int(ref & 0xFFFF_FFFF)
    }

    /// The segment `pointer` lies in (it must lie in the pool).
    @inline(__always) public func segment(containing pointer: UnsafeRawPointer) -> Int {
        (pointer - UnsafeRawPointer(memory)) / segmentSize
    }

    public var freeSegments: Int { free.withLock { $0.count } }

    /// Segments the partitions may hold together (-m, or `cache_memlimit` at run time);
    /// partitions over their share evict as they next allocate.
    public var segmentLimit: Int { limit.load(ordering: .relaxed) }
    let limit: Atomic<Int>

    /// Sets the limit to `bytes` of segments; false if that is more than was reserved.
    /// (Segments beyond the limit stay in the free list, never touched until taken.)
    public func setLimit(bytes: Int) -> Bool {
        let segments = bytes / segmentSize
        guard segments >= 2, segments <= segmentCount else { return false }
        limit.store(segments, ordering: .relaxed)
        return true
    }

    func take() -> Int? {
        guard let s = free.withLock({ $0.popLast() }) else { return nil }
        freedBytes[Int(s)].store(0, ordering: .relaxed)
        return Int(s)
    }

    func give(_ segment: Int) {
        // Let the kernel reclaim the pages: an evicted segment costs no memory.
        madvise(base(of: segment), segmentSize, MADV_DONTNEED)
        free.withLock { $0.append(Int32(segment)) }
    }

    func addFreed(_ bytes: Int, segment: Int) {
        freedBytes[segment].store(freedBytes[segment].load(ordering: .relaxed) &+ UInt32(bytes), ordering: .relaxed)
    }

    func freed(_ segment: Int) -> Int { Int(freedBytes[segment].load(ordering: .relaxed)) }
}
