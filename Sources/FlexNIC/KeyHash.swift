/// A fast 32-bit hash for variable-length payload ranges (memcached keys and the like),
/// which can be longer than a Toeplitz key covers: MurmurHash3's x86_32 variant, which
/// memcached also offers (`hash_algorithm=murmur3`). Deterministic across runs and
/// processes, so a client and the pipeline agree on placement.
public enum KeyHash {
    @inlinable
    public static func hash(_ bytes: UnsafeRawPointer, count: Int, seed: UInt32 = 0) -> UInt32 {
        let c1: UInt32 = 0xcc9e_2d51, c2: UInt32 = 0x1b87_3593
        var h = seed
        var i = 0
        while i &+ 4 <= count {
            var k = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: i, as: UInt32.self))
            k &*= c1; k = k << 15 | k >> 17; k &*= c2
            h ^= k; h = h << 13 | h >> 19; h = h &* 5 &+ 0xe654_6b64
            i &+= 4
        }
        var k: UInt32 = 0
        let rest = count &- i
        if rest >= 3 { k ^= UInt32(bytes.load(fromByteOffset: i &+ 2, as: UInt8.self)) << 16 }
        if rest >= 2 { k ^= UInt32(bytes.load(fromByteOffset: i &+ 1, as: UInt8.self)) << 8 }
        if rest >= 1 {
            k ^= UInt32(bytes.load(fromByteOffset: i, as: UInt8.self))
            k &*= c1; k = k << 15 | k >> 17; k &*= c2; h ^= k
        }
        h ^= UInt32(truncatingIfNeeded: count)
        h ^= h >> 16; h &*= 0x85eb_ca6b; h ^= h >> 13; h &*= 0xc2b2_ae35; h ^= h >> 16
        return h
    }

    public static func hash(_ bytes: some Collection<UInt8>, seed: UInt32 = 0) -> UInt32 {
        Array(bytes).withUnsafeBytes { hash($0.baseAddress!, count: $0.count, seed: seed) }
    }
}
