import CFlexSys
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Reply offload (Santa, 2023): the server installs complete replies for hot keys, and
/// the pipeline answers matching requests itself, without a core.
///
/// The table is direct-mapped by key hash. Each slot is a seqlock: a writer (a core,
/// holding the key's partition) makes the sequence odd, rewrites the slot and makes it
/// even again; a reader (a pipeline) copies the reply between two loads of the sequence
/// and uses it only if both loads are equal and even and the slot is valid. Writers that
/// share a slot are serialised by the slot's own lock.
///
/// Consistency: the server invalidates a key's slot before it acknowledges any change
/// to the key, so a reply copied from the table is never older than the last
/// acknowledged write.
///
/// A `mirror` (an XDP program's map: replies answered in the kernel, before the
/// network stack) holds exactly the keys of the valid slots: every slot change, made
/// under the slot's lock, first removes the key the slot held from it, so invalidating
/// a key here invalidates it there, before the write is acknowledged.
public final class ReplyTable: @unchecked Sendable {
    public static let slotSize = 1024
    /// Bytes of key and reply a slot holds (after its 32-byte header).
    public static let capacity = slotSize - 32

    public let slots: Int
    let mask: UInt32
    let memory: UnsafeMutableRawPointer
    let sequences: UnsafeMutablePointer<Atomic<UInt64>>
    let locks: UnsafeMutablePointer<Atomic<Bool>>
    let hits: UnsafeMutablePointer<Atomic<UInt32>>
    public let served = Atomic<UInt64>(0)
    public let installs = Atomic<UInt64>(0)
    public let invalidations = Atomic<UInt64>(0)
    /// Valid slots, counted under each slot's lock: raised before a slot turns valid,
    /// lowered after it turns invalid, so it is never below the slots that are. To a
    /// writer ordered after a key's install (it holds the key's partition, as the
    /// install did), it is at least 1 while that reply is in the table: `invalidate`
    /// skips the slot's cache line when it reads 0, as in a workload that never
    /// installs (only text GETs do).
    let valid = Atomic<Int>(0)
    /// Counts `invalidateAll` calls: an install whose caller read the item before one
    /// began is refused (see `install`).
    public let epoch = Atomic<UInt64>(0)
    /// Set before the table is used, never after.
    public var mirror: (any ReplyMirror)?

    /// Slot layout: valid UInt32 @0, hash UInt32 @4, key length UInt32 @8, reply
    /// length UInt32 @12, key @32, reply after the key.
    public init(slots: Int = 1024) {
        precondition(slots > 0 && slots & (slots - 1) == 0, "reply table size: a power of two")
        self.slots = slots
        mask = UInt32(slots - 1)
        guard let m = cflex_region_alloc(slots * Self.slotSize, 1) else { fatalError("ReplyTable: out of memory") }
        memory = m
        sequences = .allocate(capacity: slots)
        locks = .allocate(capacity: slots)
        hits = .allocate(capacity: slots)
        for i in 0..<slots {
            (sequences + i).initialize(to: Atomic(0))
            (locks + i).initialize(to: Atomic(false))
            (hits + i).initialize(to: Atomic(0))
        }
    }

    deinit {
        sequences.deinitialize(count: slots); sequences.deallocate()
        locks.deinitialize(count: slots); locks.deallocate()
        hits.deinitialize(count: slots); hits.deallocate()
        cflex_region_free(memory, slots * Self.slotSize)
    }

    @inline(__always) func slot(_ hash: UInt32) -> Int { Int(hash & mask) }
    @inline(__always) func base(_ i: Int) -> UnsafeMutableRawPointer { memory + i &* Self.slotSize }

    // MARK: Reader (pipeline)

    /// Copies the reply for `key` to `destination` (room for `room` bytes) if the table
    /// holds a current one; returns its length, or nil.
    @inline(__always)
    public func lookup(hash: UInt32, key: UnsafeRawPointer, keyLength: Int,
                       into destination: UnsafeMutableRawPointer, room: Int) -> Int? {
        let i = slot(hash)
        let seq = sequences[i].load(ordering: .acquiring)
        guard seq & 1 == 0 else { return nil }
        let b = base(i)
        guard b.load(fromByteOffset: 0, as: UInt32.self) == 1, b.load(fromByteOffset: 4, as: UInt32.self) == hash,
              Int(b.load(fromByteOffset: 8, as: UInt32.self)) == keyLength else { return nil }
        let n = Int(b.load(fromByteOffset: 12, as: UInt32.self))
        guard n <= room, keyLength + n <= Self.capacity, memcmp(b + 32, key, keyLength) == 0 else { return nil }
        destination.copyMemory(from: b + 32 + keyLength, byteCount: n)
        atomicMemoryFence(ordering: .acquiring)
        guard sequences[i].load(ordering: .relaxed) == seq else { return nil }
        served.wrappingAdd(1, ordering: .relaxed)
        return n
    }

    // MARK: Writers (cores)

    @inline(__always) func write(_ i: Int, _ body: (UnsafeMutableRawPointer) -> Void) {
        // A holder may be in a system call (the mirror's): after a short spin, yield.
        var spins = 0
        while locks[i].compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged == false {
            spins += 1
            if spins & 63 == 0 { sched_yield() }
        }
        sequences[i].wrappingAdd(1, ordering: .acquiringAndReleasing)  // odd: readers back off
        let b = base(i)
        if let mirror, b.load(fromByteOffset: 0, as: UInt32.self) == 1 {
            mirror.remove(key: UnsafeRawBufferPointer(start: b + 32, count: Int(b.load(fromByteOffset: 8, as: UInt32.self))))
        }
        body(b)
        sequences[i].wrappingAdd(1, ordering: .releasing)             // even again
        locks[i].store(false, ordering: .releasing)
    }

    /// Drops the reply for `key`, if its slot holds it. Call before acknowledging any
    /// change to the key.
    public func invalidate(hash: UInt32, key: UnsafeRawBufferPointer) {
        guard valid.load(ordering: .relaxed) > 0 else { return }
        let i = slot(hash)
        let b = base(i)
        // Cheap check first: a slot holding another key needs no write.
        guard b.load(fromByteOffset: 0, as: UInt32.self) == 1, b.load(fromByteOffset: 4, as: UInt32.self) == hash else { return }
        write(i, clear)
        invalidations.wrappingAdd(1, ordering: .relaxed)
    }

    /// Drops every reply (flush_all). Each slot is visited under its lock, after the
    /// epoch moved on: an install racing this either finishes first (and is dropped
    /// here) or sees the new epoch (and is refused).
    public func invalidateAll() {
        epoch.wrappingAdd(1, ordering: .sequentiallyConsistent)
        for i in 0..<slots { write(i, clear) }
    }

    /// Makes a slot invalid (its lock held), counting it off `valid` if it was valid.
    func clear(_ b: UnsafeMutableRawPointer) {
        guard b.load(fromByteOffset: 0, as: UInt32.self) == 1 else { return }
        b.storeBytes(of: UInt32(0), toByteOffset: 0, as: UInt32.self)
        valid.wrappingSubtract(1, ordering: .relaxed)
    }

    /// Counts a core-served access to `hash`'s slot; true once it is worth installing:
    /// `threshold` accesses into an empty slot, or `displace` accesses (misses of the
    /// table, as the table answers its own key) before an installed reply is replaced,
    /// so colliding keys do not evict each other on every request. A key whose reply a
    /// write invalidated is hot again at once: the slot still names its hash.
    public func isHot(hash: UInt32, threshold: UInt32 = 8, displace: UInt32 = 64) -> Bool {
        let i = slot(hash)
        let b = base(i)
        let occupied = b.load(fromByteOffset: 0, as: UInt32.self) == 1
        if !occupied && b.load(fromByteOffset: 4, as: UInt32.self) == hash { return true }
        // A load and a store, not a locked add on every GET: two workers counting the
        // same slot at once may lose a count, which only delays an install.
        let n = hits[i].load(ordering: .relaxed) &+ 1
        hits[i].store(n, ordering: .relaxed)
        return n >= (occupied ? displace : threshold)
    }

    /// Installs `reply` for `key` (replacing whatever the slot held). The caller holds
    /// the key's partition, so no write to the key can interleave, and read `epoch`
    /// (acquiring) before it read the item: if an `invalidateAll` (flush_all) began
    /// since, the reply may be of an item the flush ended, and it is refused.
    @discardableResult
    public func install(hash: UInt32, key: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer, epoch seen: UInt64) -> Bool {
        guard key.count + reply.count <= Self.capacity else { return false }
        let i = slot(hash)
        var installed = false
        write(i) { b in
            guard epoch.load(ordering: .sequentiallyConsistent) == seen else { return }
            installed = true
            b.storeBytes(of: hash, toByteOffset: 4, as: UInt32.self)
            b.storeBytes(of: UInt32(key.count), toByteOffset: 8, as: UInt32.self)
            b.storeBytes(of: UInt32(reply.count), toByteOffset: 12, as: UInt32.self)
            (b + 32).copyMemory(from: key.baseAddress!, byteCount: key.count)
            (b + 32 + key.count).copyMemory(from: reply.baseAddress!, byteCount: reply.count)
            if b.load(fromByteOffset: 0, as: UInt32.self) != 1 { valid.wrappingAdd(1, ordering: .relaxed) }
            b.storeBytes(of: UInt32(1), toByteOffset: 0, as: UInt32.self)
            mirror?.install(key: key, reply: reply)
        }
        guard installed else { return false }
        hits[i].store(0, ordering: .relaxed)
        installs.wrappingAdd(1, ordering: .relaxed)
        return true
    }
}

/// A second copy of a `ReplyTable`'s replies, kept by the table under its slot locks
/// (see `ReplyTable.mirror`). Called from any worker; each call completes before the
/// table goes on.
public protocol ReplyMirror: AnyObject, Sendable {
    func install(key: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer)
    func remove(key: UnsafeRawBufferPointer)
}
