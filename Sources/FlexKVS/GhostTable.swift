import CFlexSys

/// Key hashes of items recently evicted without being read (S3-FIFO's ghost queue):
/// a direct-mapped table, so remembering one forgets whichever older hash shared its
/// slot, and memory stays at 4 bytes a slot. A hit is the hash itself, so an unrelated
/// key is taken for a ghost only on a full 32-bit hash collision.
///
/// The slot comes from the hash's high bits (Fibonacci hashing): a partition's keys
/// share their low bits (they pick the partition), which would leave most slots unused.
final class GhostTable {
    /// 4 bytes a slot, a power of two of them (huge pages from 2 MiB on: every access
    /// lands on a random slot).
    let slots: UnsafeMutablePointer<UInt32>
    let count: Int
    let shift: UInt32
    /// Slots holding a hash. While none does (nothing was evicted yet, the usual state
    /// of a cache sized for its keys), `remove` answers without touching the table.
    private(set) var remembered = 0

    init(capacity: Int) {
        var bits: UInt32 = 10
        while 1 << bits < capacity { bits += 1 }
        count = 1 << bits
        guard let memory = cflex_region_alloc(count * 4, 1) else { fatalError("GhostTable: out of memory") }
        slots = memory.bindMemory(to: UInt32.self, capacity: count)
        shift = 32 - bits
    }

    deinit { cflex_region_free(slots, count * 4) }

    @inline(__always) func slot(_ hash: UInt32) -> Int { Int((hash &* 0x9E37_79B1) >> shift) }

    /// Hash 0 is stored as 1 (0 marks an empty slot).
    @inline(__always) static func tag(_ hash: UInt32) -> UInt32 { hash == 0 ? 1 : hash }

    func insert(_ hash: UInt32) {
        let i = slot(hash)
        if slots[i] == 0 { remembered += 1 }
        slots[i] = Self.tag(hash)
    }

    /// Whether `hash` was a ghost; it is one no longer.
    func remove(_ hash: UInt32) -> Bool {
        guard remembered > 0 else { return false }
        let i = slot(hash)
        guard slots[i] == Self.tag(hash) else { return false }
        slots[i] = 0
        remembered -= 1
        return true
    }
}
