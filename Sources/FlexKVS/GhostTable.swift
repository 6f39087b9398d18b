/// Key hashes of items recently evicted without being read (S3-FIFO's ghost queue):
/// a direct-mapped table, so remembering one forgets whichever older hash shared its
/// slot, and memory stays at 4 bytes a slot. A hit is the hash itself, so an unrelated
/// key is taken for a ghost only on a full 32-bit hash collision.
struct GhostTable {
    var slots: [UInt32]
    let mask: Int

    init(capacity: Int) {
        var n = 1024
        while n < capacity { n <<= 1 }
        slots = Array(repeating: 0, count: n)
        mask = n - 1
    }

    /// Hash 0 is stored as 1 (0 marks an empty slot).
    @inline(__always) static func tag(_ hash: UInt32) -> UInt32 { hash == 0 ? 1 : hash }

    mutating func insert(_ hash: UInt32) { slots[Int(hash) & mask] = Self.tag(hash) }

    /// Whether `hash` was a ghost; it is one no longer.
    mutating func remove(_ hash: UInt32) -> Bool {
        let i = Int(hash) & mask
        guard slots[i] == Self.tag(hash) else { return false }
        slots[i] = 0
        return true
    }
}
