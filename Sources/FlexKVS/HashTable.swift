import CFlexSys
#if canImport(Glibc)
import Glibc
#endif

/// The index of one partition (thesis 5.1): a power-of-two array of 64-byte buckets,
/// each with a lock word, five item references and their 16-bit hash tags; a full
/// bucket chains an overflow bucket. The bucket is picked by the low bits of the hash,
/// the tag comes from the high bits, so most misses never touch an item.
///
/// Growth is incremental: when the table holds more than four items per bucket on
/// average, a table twice the size is made and every later operation moves one old
/// bucket (with its chain) across, so no operation ever stops for more than one bucket.
///
/// Not thread-safe: the owning partition serialises access (by core ownership in key
/// steering, by its lock in flow steering).
final class HashTable {
    /// Bucket layout: lock UInt32 @0, next UInt32 @4 (overflow index + 1, 0 = none),
    /// tags 5 x UInt16 @8, refs 5 x UInt64 @24.
    static let bucketSize = 64
    static let slots = 5

    struct Table {
        let buckets: UnsafeMutableRawPointer
        let count: Int
        var mask: UInt32 { UInt32(count - 1) }

        init(count: Int) {
            self.count = count
            // Huge pages from 2 MiB on: every lookup lands on a random bucket.
            guard let b = cflex_region_alloc(count * HashTable.bucketSize, 1) else { fatalError("HashTable: out of memory") }
            buckets = b
        }

        func release() { cflex_region_free(buckets, count * HashTable.bucketSize) }
    }

    var table: Table
    /// The table being migrated from, while growing; buckets below `migrated` have moved.
    var old: Table?
    var migrated = 0
    /// Overflow buckets (shared by both tables), with a free list threaded through `next`.
    var overflow: UnsafeMutableRawPointer
    var overflowCapacity: Int
    var overflowUsed = 0
    var overflowFree: UInt32 = 0
    public private(set) var count = 0

    init(buckets: Int = 1024) {
        precondition(buckets > 0 && buckets & (buckets - 1) == 0)
        table = Table(count: buckets)
        overflowCapacity = max(64, buckets / 8)
        overflow = calloc(overflowCapacity, Self.bucketSize)!
    }

    deinit {
        table.release()
        old?.release()
        free(overflow)
    }

    /// Bytes of memory the index uses (buckets, overflow, a table being migrated from).
    var memoryFootprint: Int {
        (table.count + (old?.count ?? 0) + overflowCapacity) * Self.bucketSize
    }

    // MARK: Bucket access

    @inline(__always) static func tag(_ hash: UInt32) -> UInt16 { UInt16(truncatingIfNeeded: hash >> 16) | 1 }
    @inline(__always) static func tagAt(_ b: UnsafeMutableRawPointer, _ i: Int) -> UInt16 { b.load(fromByteOffset: 8 + 2 * i, as: UInt16.self) }
    @inline(__always) static func refAt(_ b: UnsafeMutableRawPointer, _ i: Int) -> ItemRef { b.load(fromByteOffset: 24 + 8 * i, as: UInt64.self) }
    @inline(__always) static func set(_ b: UnsafeMutableRawPointer, _ i: Int, tag: UInt16, ref: ItemRef) {
        b.storeBytes(of: tag, toByteOffset: 8 + 2 * i, as: UInt16.self)
        b.storeBytes(of: ref, toByteOffset: 24 + 8 * i, as: UInt64.self)
    }
    @inline(__always) static func next(_ b: UnsafeMutableRawPointer) -> UInt32 { b.load(fromByteOffset: 4, as: UInt32.self) }

    @inline(__always) func overflowBucket(_ n: UInt32) -> UnsafeMutableRawPointer { overflow + Int(n - 1) * Self.bucketSize }

    /// The head bucket for `hash`, migrating its old bucket first while growing.
    func head(_ hash: UInt32) -> UnsafeMutableRawPointer {
        if old != nil { migrate(bucket: Int(hash & old!.mask)); migrateStep() }
        return headAddress(hash)
    }

    /// Where `hash`'s head bucket is in the current table (no migration step).
    @inline(__always) func headAddress(_ hash: UInt32) -> UnsafeMutableRawPointer {
        table.buckets + Int(hash & table.mask) * Self.bucketSize
    }

    /// Starts loading `hash`'s head bucket into the cache (a burst's lookups overlap
    /// their misses). No migration step: a stale address is only a wasted hint.
    @inline(__always) func prefetch(_ hash: UInt32) {
        cflex_prefetch(headAddress(hash))
    }

    /// The references in `hash`'s head bucket with its tag (candidates to prefetch).
    @inline(__always) func candidates(_ hash: UInt32, _ body: (ItemRef) -> Void) {
        let b = headAddress(hash)
        let t = Self.tag(hash)
        for i in 0..<Self.slots where Self.tagAt(b, i) == t { body(Self.refAt(b, i)) }
    }

    // MARK: Operations

    /// The bucket and slot of the entry with `hash`'s tag whose item satisfies `matches`.
    func locate(_ hash: UInt32, _ matches: (ItemRef) -> Bool) -> (bucket: UnsafeMutableRawPointer, slot: Int)? {
        let t = Self.tag(hash)
        var b = head(hash)
        while true {
            for i in 0..<Self.slots where Self.tagAt(b, i) == t && matches(Self.refAt(b, i)) { return (b, i) }
            let n = Self.next(b)
            if n == 0 { return nil }
            b = overflowBucket(n)
        }
    }

    /// The reference whose item satisfies `matches`, among entries with `hash`'s tag.
    func find(_ hash: UInt32, _ matches: (ItemRef) -> Bool) -> ItemRef? {
        locate(hash, matches).map { Self.refAt($0.bucket, $0.slot) }
    }

    /// Points the entry that `matches` at `ref`, or adds an entry; returns the reference
    /// it replaced.
    @discardableResult
    func upsert(_ hash: UInt32, ref: ItemRef, _ matches: (ItemRef) -> Bool) -> ItemRef? {
        let t = Self.tag(hash)
        let first = head(hash)
        var b = first
        var last: UInt32 = 0  // overflow index of `b`, 0 for the head bucket
        var empty: (UnsafeMutableRawPointer, Int)? = nil
        while true {
            for i in 0..<Self.slots {
                let tg = Self.tagAt(b, i)
                if tg == t, matches(Self.refAt(b, i)) {
                    let replaced = Self.refAt(b, i)
                    Self.set(b, i, tag: t, ref: ref)
                    return replaced
                }
                if tg == 0 && empty == nil { empty = (b, i) }
            }
            let n = Self.next(b)
            if n == 0 { break }
            last = n
            b = overflowBucket(n)
        }
        if let (eb, i) = empty {
            Self.set(eb, i, tag: t, ref: ref)
        } else {
            Self.set(appendOverflow(after: first, last: last), 0, tag: t, ref: ref)
        }
        count += 1
        if old == nil && count > table.count * 4 { startGrowth() }
        return nil
    }

    /// Removes the entry that `matches`; returns its reference.
    @discardableResult
    func remove(_ hash: UInt32, _ matches: (ItemRef) -> Bool) -> ItemRef? {
        guard let (b, i) = locate(hash, matches) else { return nil }
        let r = Self.refAt(b, i)
        Self.set(b, i, tag: 0, ref: 0)
        count -= 1
        return r
    }

    /// Empties the table (flush_all frees items lazily; this is for tests and resets).
    func removeAll() {
        old?.release()
        old = nil
        memset(table.buckets, 0, table.count * Self.bucketSize)
        memset(overflow, 0, overflowCapacity * Self.bucketSize)
        overflowUsed = 0
        overflowFree = 0
        count = 0
    }

    /// Calls `body` with every reference (tests, and walks such as `stats items`).
    func forEach(_ body: (ItemRef) -> Void) {
        func walk(_ t: Table, from: Int) {
            for i in from..<t.count {
                var b = t.buckets + i * Self.bucketSize
                while true {
                    for s in 0..<Self.slots where Self.tagAt(b, s) != 0 { body(Self.refAt(b, s)) }
                    let n = Self.next(b)
                    if n == 0 { break }
                    b = overflowBucket(n)
                }
            }
        }
        walk(table, from: 0)
        if let o = old { walk(o, from: migrated) }
    }

    // MARK: Overflow and growth

    func allocateOverflow() -> UInt32 {
        if overflowFree != 0 {
            let n = overflowFree
            let b = overflowBucket(n)
            overflowFree = Self.next(b)
            memset(b, 0, Self.bucketSize)
            return n
        }
        if overflowUsed == overflowCapacity {
            let bigger = overflowCapacity * 2
            let p = realloc(overflow, bigger * Self.bucketSize)!
            memset(p + overflowCapacity * Self.bucketSize, 0, overflowCapacity * Self.bucketSize)
            overflow = p
            overflowCapacity = bigger
        }
        overflowUsed += 1
        return UInt32(overflowUsed)
    }

    func freeOverflow(_ n: UInt32) {
        let b = overflowBucket(n)
        memset(b, 0, Self.bucketSize)
        b.storeBytes(of: overflowFree, toByteOffset: 4, as: UInt32.self)
        overflowFree = n
    }

    func startGrowth() {
        let bigger = Table(count: table.count * 2)
        old = table
        table = bigger
        migrated = 0
    }

    /// Moves the next not-yet-moved old bucket.
    func migrateStep() {
        guard let o = old else { return }
        while migrated < o.count && Self.tagsEmpty(o.buckets + migrated * Self.bucketSize) && Self.next(o.buckets + migrated * Self.bucketSize) == 0 {
            migrated += 1
        }
        if migrated < o.count { migrate(bucket: migrated) }
        finishIfDone()
    }

    static func tagsEmpty(_ b: UnsafeMutableRawPointer) -> Bool {
        (0..<slots).allSatisfy { tagAt(b, $0) == 0 }
    }

    /// Moves old bucket `i` (and its chain) into the new table, if not moved yet.
    func migrate(bucket i: Int) {
        guard let o = old else { return }
        let headBucket = o.buckets + i * Self.bucketSize
        var b = headBucket
        var chain: [UInt32] = []
        while true {
            for s in 0..<Self.slots where Self.tagAt(b, s) != 0 {
                let ref = Self.refAt(b, s)
                let hash = hashOf(ref)
                insertMoved(hash: hash, tag: Self.tagAt(b, s), ref: ref)
            }
            let n = Self.next(b)
            if n == 0 { break }
            chain.append(n)
            b = overflowBucket(n)
        }
        memset(headBucket, 0, Self.bucketSize)
        chain.forEach { freeOverflow($0) }
        if i == migrated { migrated += 1 }
        finishIfDone()
    }

    func finishIfDone() {
        if let o = old, migrated >= o.count {
            o.release()
            old = nil
        }
    }

    /// Inserts a moved entry into the new table (no duplicate check: keys are unique).
    func insertMoved(hash: UInt32, tag: UInt16, ref: ItemRef) {
        let first = headAddress(hash)
        var b = first
        var last: UInt32 = 0
        while true {
            for s in 0..<Self.slots where Self.tagAt(b, s) == 0 {
                Self.set(b, s, tag: tag, ref: ref)
                return
            }
            let n = Self.next(b)
            if n == 0 { break }
            last = n
            b = overflowBucket(n)
        }
        Self.set(appendOverflow(after: first, last: last), 0, tag: tag, ref: ref)
    }

    /// Chains a fresh overflow bucket after the chain's last bucket (the head `first`
    /// when `last` is 0) and returns it. Addresses are taken after allocating: growing
    /// the overflow array moves it.
    func appendOverflow(after first: UnsafeMutableRawPointer, last: UInt32) -> UnsafeMutableRawPointer {
        let n = allocateOverflow()
        let tail = last == 0 ? first : overflowBucket(last)
        tail.storeBytes(of: n, toByteOffset: 4, as: UInt32.self)
        return overflowBucket(n)
    }

    /// How the table learns an item's hash when moving it (set by the partition).
    var hashOf: (ItemRef) -> UInt32 = { _ in 0 }
}
