/// memcached's slab classes, used only to report items in the shape its tools read
/// (`stats items`, `stats slabs`, `stats cachedump`, `lru_crawler metadump`): flexkvs
/// stores items in log segments, not slabs, so each item is counted in the class its
/// memcached size would fall in.
///
/// Invariants: class 1 holds 96-byte chunks; each next class is 1.25x larger, rounded
/// up to 8 bytes; the last class holds `chunkMax` (512 KiB) chunks and every larger
/// item (memcached chains those from chunks of that class).
struct SizeClasses {
    static let chunkMax = 512 << 10
    static let pageSize = 1 << 20
    /// Chunk size of class i + 1.
    static let sizes: [Int] = {
        var out: [Int] = []
        var size = 96
        while Double(size) < Double(chunkMax) / 1.25 {
            if size % 8 != 0 { size += 8 - size % 8 }
            out.append(size)
            size = Int(Double(size) * 1.25)
        }
        out.append(chunkMax)
        return out
    }()

    /// The bytes memcached would use for an item (its `ntotal`).
    static func memcachedSize(keyLength: Int, flags: UInt32, valueLength: Int, cas: Bool) -> Int {
        48 + keyLength + 1 + (flags != 0 ? 4 : 0) + valueLength + 2 + (cas ? 8 : 0)
    }

    /// The class (from 1) an item of `size` bytes falls in.
    static func classID(size: Int) -> Int {
        var lo = 0, hi = sizes.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if sizes[mid] >= size { hi = mid } else { lo = mid + 1 }
        }
        return lo + 1
    }
}
