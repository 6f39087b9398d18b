import CFlexSys
import Synchronization

/// How a store command treats an existing item.
public enum StoreMode: Sendable, Equatable {
    case set, add, replace, append, prepend
    /// Store only if the item's CAS unique is still this one.
    case cas(UInt64)
}

public enum StoreResult: Sendable, Equatable {
    case stored(cas: UInt64)
    case notStored
    /// CAS mismatch.
    case exists
    /// CAS, append or prepend on a missing key.
    case notFound
    case tooLarge
    case outOfMemory
}

public enum DeltaResult: Sendable, Equatable {
    case value(UInt64, cas: UInt64)
    case notFound
    case nonNumeric
    case exists
}

/// One slice of the key space: its hash table and its item log. In key steering a
/// partition belongs to one core and is touched by nothing else; in flow steering any
/// core may reach it and takes `lock` first. All methods assume that serialisation.
///
/// Items found by `get` stay valid until the partition is next modified.
public final class Partition: @unchecked Sendable {
    public let index: Int
    /// The store that owns this partition. Unowned and unchecked (no reference counting
    /// on every access, which is on every request): the store holds its partitions and
    /// outlives them.
    unowned(unsafe) let store: KVStore
    let table: HashTable
    /// Eviction is S3-FIFO (Yang et al., SOSP '23) at segment granularity: new items
    /// enter `probation`, a FIFO of about a twentieth of the partition's segments;
    /// evicted from there, those read meanwhile move to `main` and the rest leave, their
    /// key hashes remembered in `ghosts`. An item whose key is a ghost enters `main`
    /// directly. `main` is a FIFO whose evicted segments give each item read since its
    /// last move another round at its head, spending one of its (at most 3) counted
    /// reads. One-hit items thus leave after a twentieth of the memory instead of a
    /// whole pass, and the hot set stays.
    var probation: ItemLog
    var main: ItemLog
    /// Whether a segment turned half dead since compaction last looked, and how many
    /// segments had closed then (`compactOne`).
    var compactionDue = true
    var closedWhenLooked = 0
    let ghosts: GhostTable
    var casCounter: UInt64 = 0
    public let stats = KVStats()
    let lockWord = Atomic<Bool>(false)

    init(index: Int, store: KVStore, buckets: Int) {
        self.index = index
        self.store = store
        let share = Self.quota(of: store)
        probation = ItemLog(pool: store.pool, expectedSegments: share)
        main = ItemLog(pool: store.pool, expectedSegments: share)
        ghosts = GhostTable(capacity: share * store.pool.segmentSize / 512)
        table = HashTable(buckets: buckets)
        let pool = store.pool
        table.hashOf = { ref in ItemView(pool.pointer(to: ref)).hash }
    }

    // MARK: Locking (flow steering)

    /// Runs `body` holding the partition's spin lock (held for one request, or for a
    /// shard move: `KVStore.moveShard` scans the partition and copies the shard's
    /// items, a few milliseconds for a large partition, while requests for it wait).
    @inline(__always)
    public func withLock<T>(_ body: (Partition) throws -> T) rethrows -> T {
        while lockWord.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged == false {
            while lockWord.load(ordering: .relaxed) {}  // wait for a release before retrying the CAS
        }
        defer { lockWord.store(false, ordering: .releasing) }
        return try body(self)
    }


    // MARK: Lookup

    @inline(__always) func item(_ ref: ItemRef) -> ItemView { ItemView(pointer(ref)) }

    @inline(__always) func pointer(_ ref: ItemRef) -> UnsafeMutableRawPointer { store.pool.pointer(to: ref) }

    /// Segments a partition may hold, probation and main together: an equal share of
    /// the pool's limit (which can change at run time: `cache_memlimit`), at least 2.
    static func quota(of store: KVStore) -> Int {
        max(2, store.pool.segmentLimit / max(1, store.configuration.partitions))
    }
    var quota: Int { Self.quota(of: store) }
    /// Whether another segment may be opened.
    var mayOpen: Bool { segmentsHeld < quota }

    /// The live entry for `key`, dropping it if it expired or was flushed.
    /// With `storing`, an expired or flushed item found is also counted as reclaimed
    /// (memcached: a store that reuses an expired item's memory).
    func lookup(_ key: UnsafeRawBufferPointer, _ hash: UInt32, storing: Bool = false) -> (ItemRef, ItemView)? {
        guard let ref = table.find(hash, { item($0).keyEquals(key) }) else { return nil }
        let it = item(ref)
        if let reason = invalidity(it) {
            stats.add(reason)
            if storing { stats.add(.reclaimed) }
            unlink(ref, hash: hash)
            return nil
        }
        return (ref, it)
    }

    /// Prefetches what looking up `hashes` will touch: first every head bucket, then
    /// the items whose tags match (two passes, so the misses of a burst overlap), three
    /// cache lines of each: a small item's header, key and value span that many (the
    /// thesis' 32-byte key and 64-byte value: 136 bytes), and the key's compare and the
    /// value's copy would each wait for a line the first did not bring.
    /// Caller holds the lock.
    func prefetch(_ hashes: UnsafeBufferPointer<UInt32>) {
        for h in hashes { table.prefetch(h) }
        for h in hashes {
            table.candidates(h) {
                let item = pointer($0)
                cflex_prefetch(item)
                cflex_prefetch(item + 64)
                cflex_prefetch(item + 128)
            }
        }
    }

    /// Why an item may no longer be served, if it may not.
    @inline(__always) func invalidity(_ it: ItemView) -> KVStats.Counter? {
        let e = it.expiry
        if e != 0 && e <= store.clock.seconds { return .getExpired }
        let flush = store.flushDeadline.load(ordering: .relaxed)
        if flush != 0 && it.storedAt <= flush && store.clock.nanos >= flush { return .getFlushed }
        return nil
    }

    /// Removes the table entry for `ref` and accounts its space as freed.
    func unlink(_ ref: ItemRef, hash: UInt32) {
        store.replyTable?.invalidate(hash: hash, key: item(ref).key)
        table.remove(hash) { $0 == ref }
        retire(ref)
    }

    /// Marks a record dead (no table entry points at it any more).
    func retire(_ ref: ItemRef) {
        let it = item(ref)
        guard it.isLive else { return }
        it.isLive = false
        noteFreed(it.recordSize, segment: ItemLog.segment(of: ref))
        stats.add(.currItems, -1)
        stats.add(.bytes, -Int64(it.recordSize))
    }

    // MARK: Commands

    /// GET: the item, or nil (counted as a hit or a miss).
    public func get(_ key: UnsafeRawBufferPointer, hash: UInt32) -> ItemView? {
        stats.add(.cmdGet)
        guard let (_, it) = lookup(key, hash) else {
            stats.add(.getMisses)
            return nil
        }
        stats.add(.getHits)
        it.marks.insert(.fetched); it.marks.countRead()
        return it
    }

    /// TOUCH / GAT: sets a new expiry; returns the item.
    public func touch(_ key: UnsafeRawBufferPointer, hash: UInt32, expiry: UInt32) -> ItemView? {
        stats.add(.cmdTouch)
        guard let (_, it) = lookup(key, hash) else {
            stats.add(.touchMisses)
            return nil
        }
        stats.add(.touchHits)
        it.marks.insert(.fetched); it.marks.countRead()
        if expiry != it.expiry { store.replyTable?.invalidate(hash: hash, key: key) }
        it.expiry = expiry
        return it
    }

    public func delete(_ key: UnsafeRawBufferPointer, hash: UInt32) -> Bool {
        guard let (ref, _) = lookup(key, hash) else {
            stats.add(.deleteMisses)
            return false
        }
        unlink(ref, hash: hash)
        stats.add(.deleteHits)
        return true
    }

    /// Drops `key`'s item, if any, without counting a delete: a SET refused (too large,
    /// no memory) must not leave the old value readable (memcached unlinks it too).
    public func discard(_ key: UnsafeRawBufferPointer, hash: UInt32) {
        if let (ref, _) = lookup(key, hash) { unlink(ref, hash: hash) }
    }

    /// SET and friends, with memcached's CAS rules: `.cas` on a missing item is
    /// NOT_FOUND; `requestCas` (meta C) makes append/prepend EXISTS on a mismatch; with
    /// `allowStale` (meta I) a `.cas` older than the item's stores the value marked stale,
    /// keeping the item's expiry. `marks` are given to the new item.
    public func store(_ mode: StoreMode, key: UnsafeRawBufferPointer, hash: UInt32, flags: UInt32, expiry: UInt32,
                      value: UnsafeRawBufferPointer, requestCas: UInt64 = 0, allowStale: Bool = false,
                      marks: ItemMarks = []) -> StoreResult {
        stats.add(.cmdSet)
        // The new bytes alone must fit before anything else is decided (memcached
        // allocates the item first).
        guard store.fits(keyLength: key.count, flags: flags, valueLength: value.count) else {
            if mode == .set { discard(key, hash: hash) }
            return .tooLarge
        }
        let existing = lookup(key, hash, storing: true)
        switch mode {
        case .add where existing != nil: return .notStored
        case .replace where existing == nil, .append where existing == nil, .prepend where existing == nil:
            return .notStored
        case .cas(let unique):
            guard let (_, it) = existing else { stats.add(.casMisses); return .notFound }
            if it.cas != unique && !(allowStale && unique != 0 && unique < it.cas) { stats.add(.casBadval); return .exists }
            stats.add(.casHits)
        case .append, .prepend:
            if requestCas != 0, let (_, it) = existing, it.cas != requestCas { return .exists }
        default: break
        }
        var itemFlags = flags, itemExpiry = expiry
        // An append or prepend makes a fresh item: memcached gives it no marks at all.
        var itemMarks = mode == .append || mode == .prepend ? [] : marks
        if case .cas(let unique) = mode, let (_, it) = existing, unique != it.cas {
            // A stale write (meta I): the value is kept, marked stale, with the old expiry.
            itemExpiry = it.expiry
            itemMarks.insert(.stale)
            itemMarks.formUnion(it.marks.intersection(.tokenSent))
        }
        // append/prepend: the old value joins the new one; flags and expiry stay the
        // item's. It is copied out first: allocating may evict the segment it lives in.
        var old: [UInt8] = []
        if let (_, it) = existing, mode == .append || mode == .prepend {
            itemFlags = it.flags
            itemExpiry = it.expiry
            old = Array(UnsafeRawBufferPointer(it.value))
        }
        let total = old.count + value.count
        // memcached: an append that would pass -I is not stored (other modes store the
        // new bytes alone, checked above).
        if (mode == .append || mode == .prepend) && !store.fits(keyLength: key.count, flags: itemFlags, valueLength: total) {
            return .notStored
        }
        guard let (ref, it) = allocate(key: key, hash: hash, valueLength: total, flags: itemFlags, expiry: itemExpiry) else {
            if mode == .set { discard(key, hash: hash) }
            return .outOfMemory
        }
        let out = it.value
        old.withUnsafeBytes { o in
            let (first, second) = mode == .prepend ? (value, o) : (o, value)
            if first.count > 0 { out.baseAddress!.copyMemory(from: first.baseAddress!, byteCount: first.count) }
            if second.count > 0 { (out.baseAddress! + first.count).copyMemory(from: second.baseAddress!, byteCount: second.count) }
        }
        it.marks = itemMarks
        link(ref, it, key: key, hash: hash)
        return .stored(cas: it.cas)
    }

    /// INCR/DECR: the value must start with a decimal number as memcached reads it
    /// (`DecimalText`: `12 abc` is 12); DECR stops at 0, INCR wraps at 2^64. The new
    /// number replaces the value, space-padded to the old length when it is shorter
    /// (memcached's in-place update). `initial` (binary protocol) creates a
    /// missing item with that value.
    public func delta(_ key: UnsafeRawBufferPointer, hash: UInt32, increment: Bool, by amount: UInt64,
                      initial: (UInt64, UInt32)? = nil, cas: UInt64 = 0) -> DeltaResult {
        guard let (_, it) = lookup(key, hash) else {
            stats.add(increment ? .incrMisses : .decrMisses)
            guard let (value, expiry) = initial else { return .notFound }
            let text = Array(String(value).utf8)
            let r = text.withUnsafeBytes { store(.add, key: key, hash: hash, flags: 0, expiry: expiry, value: $0) }
            if case .stored(let c) = r { return .value(value, cas: c) }
            return .notFound
        }
        guard it.valueLength > 0 else { return .nonNumeric }
        if cas != 0 && it.cas != cas { return .exists }
        guard let current = DecimalText.unsigned64(UnsafeRawBufferPointer(it.value)) else { return .nonNumeric }
        stats.add(increment ? .incrHits : .decrHits)
        let next = increment ? current &+ amount : (amount > current ? 0 : current - amount)
        var text = Array(String(next).utf8)
        // As memcached: a number that got shorter keeps the value's length, space-padded.
        if text.count < it.valueLength { text += [UInt8](repeating: 0x20, count: it.valueLength - text.count) }
        // In place (memcached keeps the item and its marks) unless the number grew.
        let flags = it.flags, expiry = it.expiry, marks = text.count == it.valueLength ? it.marks : []
        let r = text.withUnsafeBytes { store(.set, key: key, hash: hash, flags: flags, expiry: expiry, value: $0, marks: marks) }
        stats.add(.cmdSet, -1)  // an incr is not a set
        if case .stored(let c) = r { return .value(next, cas: c) }
        return .notFound
    }

    // MARK: Allocation, linking, eviction

    /// A new item with header and key written, or nil if it is too large or no memory
    /// can be freed.
    func allocate(key: UnsafeRawBufferPointer, hash: UInt32, valueLength: Int, flags: UInt32, expiry: UInt32)
        -> (ItemRef, ItemView)?
    {
        let size = ItemView.recordSize(keyLength: key.count, valueLength: valueLength)
        guard size <= store.pool.segmentSize else { return nil }
        // A key evicted from probation not long ago comes back to main.
        let toMain = ghosts.remove(hash)
        var ref: ItemRef
        while true {
            if let r = toMain ? main.allocate(size, mayOpen: mayOpen) : probation.allocate(size, mayOpen: mayOpen) {
                ref = r
                break
            }
            guard store.configuration.evictionsEnabled, evictOne() else { return nil }
        }
        let it = item(ref)
        it.initialize(key: key, hash: hash, valueLength: valueLength, flags: flags, expiry: expiry,
                      cas: nextCAS(), storedAt: store.clock.nanos)
        return (ref, it)
    }

    /// A CAS unique no other item of any partition has had.
    @inline(__always) func nextCAS() -> UInt64 {
        guard store.configuration.casEnabled else { return 0 }  // -C: memcached reports 0
        casCounter += 1
        return casCounter &* UInt64(store.partitionCount) &+ UInt64(index) &+ 1
    }

    /// Points the table at a new item, retiring the one it replaces.
    func link(_ ref: ItemRef, _ it: ItemView, key: UnsafeRawBufferPointer, hash: UInt32) {
        store.replyTable?.invalidate(hash: hash, key: key)
        let replaced = table.upsert(hash, ref: ref) { [self] r in r != ref && item(r).keyEquals(key) }
        if let replaced { retire(replaced) }
        stats.add(.currItems)
        stats.add(.totalItems)
        stats.add(.bytes, Int64(it.recordSize))
    }

    /// Frees one segment: probation's oldest while probation holds more than its share
    /// (or main has none), else main's oldest. False if there is none to free.
    func evictOne() -> Bool {
        if probation.full.isEmpty && main.full.isEmpty {
            // Only active segments are held (a quota of 2): close one so it can go.
            if probation.active >= 0 { probation.closeActive() } else if main.active >= 0 { main.closeActive() } else { return false }
        }
        let probationShare = max(1, quota / 20)
        if !probation.full.isEmpty && (probation.segmentsHeld > probationShare || main.full.isEmpty) {
            evict(probation.takeOldest()!, fromProbation: true)
        } else if !main.full.isEmpty {
            evict(main.takeOldest()!, fromProbation: false)
        } else {
            return false
        }
        return true
    }

    /// Empties segment `s` and returns it to the pool. Its live items read since they
    /// were written or last moved move to main's head, densest (reads per byte) first,
    /// while they take less than `keepShare` (`promoteShare` from probation) of a
    /// segment, so every eviction frees the rest; the others leave (from probation,
    /// remembered as ghosts).
    func evict(_ s: Int, fromProbation: Bool) {
        let log = fromProbation ? probation : main
        candidates.removeAll(keepingCapacity: true)
        log.forEachRecord(in: s) { ref, it in
            guard it.isLive else { return }
            if invalidity(it) != nil {
                stats.add(.reclaimed)
                unlink(ref, hash: it.hash)
            } else if it.marks.reads > 0 {
                candidates.append((ref, it.recordSize, Double(it.marks.reads) / Double(it.recordSize)))
            }
        }
        candidates.sort { $0.density > $1.density }
        var budget = Int(Double(store.pool.segmentSize) * (fromProbation ? Self.promoteShare : Self.keepShare))
        for (ref, size, _) in candidates where size <= budget {
            guard let newRef = main.allocate(size, mayOpen: mayOpen) else { break }
            budget -= size
            let it = item(ref)
            let moved = item(newRef)
            moved.base.copyMemory(from: it.base, byteCount: size)
            moved.marks.spendRead()
            table.upsert(it.hash, ref: newRef) { $0 == ref }
            it.isLive = false
            stats.add(.secondChances)
        }
        log.forEachRecord(in: s) { ref, it in
            guard it.isLive else { return }
            stats.add(.evictions)
            if fromProbation { ghosts.insert(it.hash) }
            unlink(ref, hash: it.hash)
        }
        store.pool.give(s)
    }

    /// The most of a segment an eviction from main moves back instead of freeing, and
    /// the most an eviction from probation promotes to main.
    /// (Chosen with `flexbench hitratio`, Zipf 0.9 and 1.1, values 100 B-10 KB: a
    /// probation of 5 % and these shares beat 10 %, and shares of 0.15-0.75.)
    static let keepShare = 0.5
    static let promoteShare = 0.75
    /// Read items of the segment being evicted (reused).
    var candidates: [(ref: ItemRef, size: Int, density: Double)] = []

    /// Accounts `bytes` of segment `s` as dead; a segment half dead makes compaction
    /// look again.
    func noteFreed(_ bytes: Int, segment s: Int) {
        let before = store.pool.freed(s)
        store.pool.addFreed(bytes, segment: s)
        let half = store.pool.segmentSize / 2
        if before < half && before + bytes >= half { compactionDue = true }
    }

    /// Compacts the full segment with the most dead bytes, if at least half of it is
    /// dead: live items move to the active segment, the segment returns to the pool.
    /// Returns whether it compacted one. Called by the owner when idle, which is often:
    /// it looks at the segments only when one has turned half dead or joined the full
    /// ones since it last looked, and allocates nothing.
    @discardableResult
    public func compactOne() -> Bool {
        let closed = probation.closed &+ main.closed
        guard compactionDue || closed != closedWhenLooked else { return false }
        compactionDue = false
        closedWhenLooked = closed
        var s = -1, inProbation = false, most = -1
        for candidate in probation.full where store.pool.freed(candidate) > most {
            (s, inProbation, most) = (candidate, true, store.pool.freed(candidate))
        }
        for candidate in main.full where store.pool.freed(candidate) > most {
            (s, inProbation, most) = (candidate, false, store.pool.freed(candidate))
        }
        guard s >= 0, most * 2 >= store.pool.segmentSize else { return false }
        compactionDue = true  // another may be due
        if inProbation { probation.take(s) } else { main.take(s) }
        (inProbation ? probation : main).forEachRecord(in: s) { ref, it in
            guard it.isLive else { return }
            if invalidity(it) != nil {
                stats.add(.reclaimed)
                unlink(ref, hash: it.hash)
                return
            }
            let newRef = inProbation ? probation.allocate(it.recordSize, mayOpen: mayOpen) : main.allocate(it.recordSize, mayOpen: mayOpen)
            guard let newRef else {
                // No room to move it: drop it as an eviction rather than lose the segment.
                stats.add(.evictions)
                unlink(ref, hash: it.hash)
                return
            }
            let moved = item(newRef)
            moved.base.copyMemory(from: it.base, byteCount: it.recordSize)
            table.upsert(it.hash, ref: newRef) { $0 == ref }
            it.isLive = false
            stats.add(.compactedItems)
        }
        store.pool.give(s)
        stats.add(.compactions)
        return true
    }

    // MARK: Placed items (--steering dma)

    /// SET of an item the pipeline placed at `ref`, in a segment this partition
    /// registered for placing: key and value already follow the 40-byte header, which
    /// this writes before linking the item. Returns the item's CAS unique.
    public func storePlaced(_ ref: ItemRef, keyLength: Int, valueLength: Int, hash: UInt32, flags: UInt32,
                            expiry: UInt32) -> UInt64 {
        stats.add(.cmdSet)
        let it = item(ref)
        it.initializeHeader(keyLength: keyLength, hash: hash, valueLength: valueLength, flags: flags, expiry: expiry,
                            cas: nextCAS(), storedAt: store.clock.nanos)
        link(ref, it, key: it.key, hash: hash)
        return it.cas
    }

    /// Turns a placed record the core did not store (or never saw) into a dead item.
    public func retirePlaced(_ ref: ItemRef, size: Int) {
        ItemView.writeDead(at: pointer(ref), size: size)
        noteFreed(size, segment: ItemLog.segment(of: ref))
    }

    /// A segment to register with the pipeline for placing items, evicting the oldest
    /// if the partition is at its quota; nil if nothing can be evicted.
    public func segmentForPlacing() -> Int? {
        while true {
            if let s = probation.takeForPlacing(mayOpen: mayOpen) { return s }
            guard evictOne() else { return nil }
        }
    }

    /// Takes back a placing segment the pipeline filled to `used` bytes.
    public func adoptPlaced(_ segment: Int, used: Int) { probation.adoptPlaced(segment, used: used) }

    // MARK: Shard moves

    /// Moves every item of shard `shard` (hash & `mask`) to `destination`, keeping its
    /// value, flags, expiry, CAS, time stored and marks; items no longer servable are
    /// dropped. An item the destination cannot make room for is dropped and counted as
    /// an eviction there. Returns how many moved. The caller holds both locks.
    func moveItems(ofShard shard: Int, mask: UInt32, to destination: Partition) -> Int {
        var refs: [ItemRef] = []
        table.forEach { ref in if Int(item(ref).hash & mask) == shard { refs.append(ref) } }
        var moved = 0
        for ref in refs {
            let it = item(ref)
            let hash = it.hash
            defer { unlink(ref, hash: hash) }
            guard invalidity(it) == nil else { continue }
            guard let (newRef, copy) = destination.allocate(key: it.key, hash: hash, valueLength: it.valueLength,
                                                           flags: it.flags, expiry: it.expiry) else {
                destination.stats.add(.evictions)
                continue
            }
            copy.value.baseAddress!.copyMemory(from: it.value.baseAddress!, byteCount: it.valueLength)
            copy.cas = it.cas
            copy.storedAt = it.storedAt
            copy.marks = it.marks
            destination.link(newRef, copy, key: it.key, hash: hash)
            destination.stats.add(.totalItems, -1)  // the same item, not a new one
            moved += 1
        }
        return moved
    }

    /// Calls `body` with every item that may still be served (stats and dumps; the
    /// caller holds the lock).
    func forEachItem(_ body: (ItemView) -> Void) {
        table.forEach { ref in
            let it = item(ref)
            if invalidity(it) == nil { body(it) }
        }
    }

    /// Every live item's key (tests and debugging).
    public func keys() -> [[UInt8]] {
        var out: [[UInt8]] = []
        table.forEach { out.append(Array(item($0).key)) }
        return out
    }

    public var itemCount: Int { table.count }
    public var indexBytes: Int { table.memoryFootprint }
    public var segmentsHeld: Int { probation.segmentsHeld + main.segmentsHeld }
}
