import FlexIO
import FlexNIC
import Foundation
import Synchronization

/// The key-value store: partitions over a shared segment pool, one per worker.
///
/// Keys are grouped in shards: a key's shard is its entry in the redirection table
/// (`shards`), the table every key-steering pipeline redirects by, so the worker a
/// shard's entry names is the one its requests are steered to. Each shard's items live
/// in one partition, its home, which follows the table: `moveShard` re-points the
/// entry (new requests go to the new worker at once), then moves the shard's items
/// between the two partitions holding both locks and changes the home. A request
/// locks the home it read and checks it is still the home, so one that races a move
/// waits for it and then runs on the new home: every request is served once, by the
/// partition that holds the shard's current items.
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
    /// `partitions` again, unretained, for the per-request paths (`withLockedPartition`):
    /// the array holds every partition for the store's lifetime, and a class's `var`
    /// array costs a retain and a release per element read. `partitions` is written once,
    /// in `init` (a `var` only because each partition is made with the store); a later
    /// write would have to refresh this and `partitionCount` too.
    let unretainedPartitions: UnretainedReferences<Partition>
    /// `partitions.count`, read without the array.
    public let partitionCount: Int
    /// Key steering's redirection table: shard (entry) -> the worker its requests go to.
    public let shards: RedirectionTable
    /// Shard -> the partition holding its items (equal to `shards` but during a move).
    let homes: UnsafeMutablePointer<Atomic<Int>>
    /// Keyed requests per shard, counted under the home partition's lock (the
    /// rebalancer reads them to find hot workers); one cache line each, since
    /// neighbouring shards belong to different workers.
    let shardRequests: UnsafeMutablePointer<Atomic<UInt64>>
    static let counterStride = 8
    /// Shards moved, and items moved with them.
    public let shardMoves = Atomic<UInt64>(0)
    /// One move at a time.
    let moving = NSLock()
    public let itemsMoved = Atomic<UInt64>(0)
    public let maxItemSize: Int
    /// Server nanoseconds at which items stored earlier become invalid (flush_all).
    let flushDeadline = Atomic<UInt64>(0)

    public init(_ c: Configuration, replyTable: ReplyTable? = nil) {
        configuration = c
        self.replyTable = replyTable
        maxItemSize = c.maxItemSize
        var segment = max(4096, c.segmentSize)
        while segment < c.maxItemSize + ItemView.headerSize + 256 { segment <<= 1 }
        // Address space for cache_memlimit to grow into: up to 16x -m (at most 16 GiB).
        pool = SegmentPool(memoryLimit: c.memoryLimit, segmentSize: segment, reserve: min(16 << 30, 16 * c.memoryLimit))
        let count = max(1, c.partitions)
        shards = RedirectionTable(queues: count)
        homes = .allocate(capacity: shards.count)
        shardRequests = .allocate(capacity: shards.count * Self.counterStride)
        for s in 0..<shards.count { (homes + s).initialize(to: Atomic(shards[s])) }
        for i in 0..<(shards.count * Self.counterStride) { (shardRequests + i).initialize(to: Atomic(0)) }
        unretainedPartitions = UnretainedReferences(capacity: count)
        partitionCount = count
        partitions = (0..<count).map {
            Partition(index: $0, store: self, buckets: c.initialBuckets)
        }
        for (i, p) in partitions.enumerated() { unretainedPartitions.set(i, p) }
    }

    deinit {
        unretainedPartitions.deallocate()
        homes.deinitialize(count: shards.count)
        homes.deallocate()
        shardRequests.deinitialize(count: shards.count * Self.counterStride)
        shardRequests.deallocate()
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

    /// The index of the partition holding `hash`'s shard now.
    @inline(__always) public func partitionIndex(for hash: UInt32) -> Int { home(ofShard: shards.entry(for: hash)) }
    @inline(__always) public func partition(for hash: UInt32) -> Partition { partitions[partitionIndex(for: hash)] }
    @inline(__always) func home(ofShard s: Int) -> Int { homes[s].load(ordering: .acquiring) }
    /// Keyed requests served for shard `s` so far.
    public func requests(ofShard s: Int) -> UInt64 { shardRequests[s &* Self.counterStride].load(ordering: .relaxed) }

    /// Hot keys' GET replies, answered by the steering pipeline (reply offload); every
    /// change to a key invalidates its entry before the change is acknowledged.
    public let replyTable: ReplyTable?

    /// Runs `body` on the partition holding `hash`'s shard, under its lock (any worker
    /// may reach any partition: flow steering, and requests racing a shard move), and
    /// counts the request against the shard.
    @inline(__always)
    public func withPartition<T>(_ hash: UInt32, _ body: (Partition) throws -> T) rethrows -> T {
        let shard = shards.entry(for: hash)
        while true {
            let home = home(ofShard: shard)
            let result: T? = try withLockedPartition(home) { p in
                // Moved while we waited for the lock: the items are at the new home.
                guard homes[shard].load(ordering: .relaxed) == home else { return nil }
                let c = shard &* Self.counterStride
                shardRequests[c].store(shardRequests[c].load(ordering: .relaxed) &+ 1, ordering: .relaxed)
                return try body(p)
            }
            if let result { return result }
        }
    }

    /// Runs `body` on partition `index` under its lock.
    @inline(__always)
    public func withLockedPartition<T>(_ index: Int, _ body: (Partition) throws -> T) rethrows -> T {
        assert(index >= 0 && index < partitionCount, "no partition \(index)")
        return try unretainedPartitions.with(index) { try $0.withLock(body) }
    }

    /// Moves shard `s` to `worker`: its requests are steered there from now on, and its
    /// items move to that worker's partition (both partitions locked meanwhile). Items
    /// the new home has no room for are dropped as evictions (a move needs evictions on:
    /// with -M nothing moves). False if nothing had to move or it may not.
    @discardableResult
    public func moveShard(_ s: Int, to worker: Int) -> Bool {
        precondition(partitions.indices.contains(worker), "no worker \(worker)")
        moving.lock()
        defer { moving.unlock() }
        let from = home(ofShard: s)
        guard from != worker, configuration.evictionsEnabled else { return false }
        // Counted before the entry changes: a worker that sees the new owner sees the
        // move (TCP sessions with requests away wait on it, `Worker.runForwarding`).
        shardMoves.wrappingAdd(1, ordering: .releasing)
        shards[s] = worker
        let (first, second) = from < worker ? (partitions[from], partitions[worker]) : (partitions[worker], partitions[from])
        let moved = first.withLock { _ in
            second.withLock { _ in
                let n = partitions[from].moveItems(ofShard: s, mask: UInt32(shards.count - 1), to: partitions[worker])
                homes[s].store(worker, ordering: .releasing)
                return n
            }
        }
        itemsMoved.wrappingAdd(UInt64(moved), ordering: .relaxed)
        return true
    }

    /// flush_all: items stored before the deadline stop being served then. `exptime` is
    /// memcached's: 0 or less now, up to 30 days a delay in seconds, beyond that an
    /// absolute unix time (now, if it has passed).
    public func flushAll(exptime: Int64 = 0) {
        var delay = max(0, exptime)
        if delay > ServerClock.relativeLimit { delay = max(0, delay - clock.unixTime) }
        // The deadline first: a GET that reads the item after the table's epoch moved
        // on sees it (the epoch's increment releases it).
        flushDeadline.store(clock.nanos + UInt64(delay) * 1_000_000_000, ordering: .relaxed)
        replyTable?.invalidateAll()
    }

    /// Whether a delayed flush_all is still to come: no reply is installed meanwhile
    /// (the table would go on serving it after the deadline).
    var flushPending: Bool { clock.nanos < flushDeadline.load(ordering: .relaxed) }

    /// cache_memlimit: item memory becomes `bytes` (at most what -m reserved); false if
    /// it cannot.
    public func setMemoryLimit(_ bytes: Int) -> Bool { pool.setLimit(bytes: bytes) }

    /// Sum of one counter over partitions.
    public func total(_ c: KVStats.Counter) -> Int64 { partitions.reduce(0) { $0 + $1.stats[c] } }

    /// Bytes of fixed overhead besides items: hash tables.
    public var indexBytes: Int { partitions.reduce(0) { $0 + $1.indexBytes } }
}
