import FlexNIC
import Synchronization

/// The key-value store: partitions over a shared segment pool. A key's partition is a
/// fixed function of its hash, `(hash & 127) % partitions`, the same mapping the
/// steering layer's default redirection table gives, so key steering sends a request
/// straight to the core that owns its partition.
public final class KVStore: @unchecked Sendable {
    public struct Configuration: Sendable {
        /// Item memory (memcached's -m), bytes.
        public var memoryLimit = 64 << 20
        /// Largest value (memcached's -I), bytes.
        public var maxItemSize = 1 << 20
        /// Log segment size; raised to fit the largest item.
        public var segmentSize = 1 << 20
        public var partitions = 1
        /// Initial hash buckets per partition (grows on demand).
        public var initialBuckets = 1 << 12
        /// Items carry CAS uniques (memcached's -C turns them off).
        public var casEnabled = true
        /// A full partition evicts its oldest segment to store more (memcached's -M
        /// turns this off: stores fail with out of memory instead).
        public var evictionsEnabled = true
        public init() {}
    }

    public let configuration: Configuration
    public let pool: SegmentPool
    public let clock = ServerClock()
    public private(set) var partitions: [Partition] = []
    public let maxItemSize: Int
    /// Server nanoseconds at which items stored earlier become invalid (flush_all).
    let flushDeadline = Atomic<UInt64>(0)

    public init(_ c: Configuration) {
        configuration = c
        maxItemSize = c.maxItemSize
        var segment = max(4096, c.segmentSize)
        while segment < c.maxItemSize + ItemView.headerSize + 256 { segment <<= 1 }
        // Address space for cache_memlimit to grow into: up to 16x -m (at most 16 GiB).
        pool = SegmentPool(memoryLimit: c.memoryLimit, segmentSize: segment, reserve: min(16 << 30, 16 * c.memoryLimit))
        partitions = (0..<max(1, c.partitions)).map {
            Partition(index: $0, store: self, buckets: c.initialBuckets)
        }
    }

    /// Whether an item fits the -I limit as memcached counts it: its 48-byte item header,
    /// the key and a NUL, 4 bytes of flags when they are not 0, the value and its CR LF,
    /// and 8 bytes of CAS unless -C. (With -I 1m a 1-byte key takes values up to
    /// 1,048,516 bytes, the same as memcached.)
    public func fits(keyLength: Int, flags: UInt32, valueLength: Int) -> Bool {
        let size = 48 + keyLength + 1 + (flags != 0 ? 4 : 0) + valueLength + 2 + (configuration.casEnabled ? 8 : 0)
        return valueLength >= 0 && size <= maxItemSize
    }

    /// The hash of a key, as the steering layer computes it.
    @inline(__always) public static func hash(_ key: UnsafeRawBufferPointer) -> UInt32 {
        KeyHash.hash(key.baseAddress!, count: key.count)
    }

    @inline(__always) public func partitionIndex(for hash: UInt32) -> Int { Int(hash & 127) % partitions.count }
    @inline(__always) public func partition(for hash: UInt32) -> Partition { partitions[partitionIndex(for: hash)] }

    /// Hot keys' GET replies, answered by the steering pipeline (reply offload); every
    /// change to a key invalidates its entry before the change is acknowledged.
    public var replyTable: ReplyTable?

    /// Whether partitions are locked around each request: needed when any core may
    /// reach any partition (flow steering), not when each partition has one owner.
    public var locksPartitions = true

    /// Runs `body` on the partition owning `hash`, under its lock if partitions are
    /// shared between cores.
    @inline(__always)
    public func withPartition<T>(_ hash: UInt32, _ body: (Partition) throws -> T) rethrows -> T {
        let p = partition(for: hash)
        return locksPartitions ? try p.withLock(body) : try body(p)
    }

    /// flush_all: items stored before the deadline stop being served then. `exptime` is
    /// memcached's: 0 or less now, up to 30 days a delay in seconds, beyond that an
    /// absolute unix time (now, if it has passed).
    public func flushAll(exptime: Int64 = 0) {
        var delay = max(0, exptime)
        if delay > ServerClock.relativeLimit { delay = max(0, delay - clock.unixTime) }
        replyTable?.invalidateAll()
        flushDeadline.store(clock.nanos + UInt64(delay) * 1_000_000_000, ordering: .relaxed)
    }

    /// cache_memlimit: item memory becomes `bytes` (at most what -m reserved); false if
    /// it cannot.
    public func setMemoryLimit(_ bytes: Int) -> Bool { pool.setLimit(bytes: bytes) }

    /// Sum of one counter over partitions.
    public func total(_ c: KVStats.Counter) -> Int64 { partitions.reduce(0) { $0 + $1.stats[c] } }

    /// Bytes of fixed overhead besides items: hash tables.
    public var indexBytes: Int { partitions.reduce(0) { $0 + $1.indexBytes } }
}
