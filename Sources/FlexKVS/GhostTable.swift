/// Key hashes of items recently evicted without being read (S3-FIFO's ghost queue):
/// a direct-mapped table, so remembering one forgets whichever older hash shared its
/// slot, and memory stays at 4 bytes a slot. A hit is the hash itself, so an unrelated
/// key is taken for a ghost only on a full 32-bit hash collision.
///
/// The slot comes from the hash's high bits (Fibonacci hashing): a partition's keys
/// share their low bits (they pick the partition), which would leave most slots unused.
struct GhostTable {
    var slots: [UInt32]
    let shift: UInt32

    init(capacity: Int) {
        var bits: UInt32 = 10
        while 1 << bits < capacity { bits += 1 }
        slots = Array(repeating: 0, count: 1 << bits)
        shift = 32 - bits
    }

    @inline(__always) func slot(_ hash: UInt32) -> Int { Int((hash &* 0x9E37_79B1) >> shift) }

    /// Hash 0 is stored as 1 (0 marks an empty slot).
    @inline(__always) static func tag(_ hash: UInt32) -> UInt32 { hash == 0 ? 1 : hash }

    mutating func insert(_ hash: UInt32) { slots[slot(hash)] = Self.tag(hash) }

    /// Whether `hash` was a ghost; it is one no longer.
    mutating func remove(_ hash: UInt32) -> Bool {
        let i = slot(hash)
        guard slots[i] == Self.tag(hash) else { return false }
        slots[i] = 0
        return true
    }
}
