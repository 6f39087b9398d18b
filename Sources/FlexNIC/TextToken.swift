/// Where a word of a text request ends, as memcached's tokenizer sees it for a key: at
/// the first space, CR or LF. The pipeline finds keys with it (`hashToken`, the reply
/// table's lookup) on every text request, so it looks at 8 bytes per step instead of
/// one (a 32-byte key cost about 170 instructions a scan byte by byte, and a GET the
/// reply table answers was scanned twice).
public enum TextToken {
    /// Bytes of `p[0..<limit]` before its first space, CR or LF; `limit` if it has none.
    /// Reads only `p[0..<limit]`.
    @inlinable
    public static func length(_ p: UnsafeRawPointer, limit: Int) -> Int {
        var n = 0
        while n &+ 8 <= limit {
            let w = UInt64(littleEndian: p.loadUnaligned(fromByteOffset: n, as: UInt64.self))
            let found = zeroBytes(w ^ 0x2020_2020_2020_2020) | zeroBytes(w ^ 0x0D0D_0D0D_0D0D_0D0D)
                | zeroBytes(w ^ 0x0A0A_0A0A_0A0A_0A0A)
            if found != 0 { return n &+ found.trailingZeroBitCount >> 3 }
            n &+= 8
        }
        while n < limit {
            let c = p.load(fromByteOffset: n, as: UInt8.self)
            if c == 0x20 || c == 0x0D || c == 0x0A { return n }
            n &+= 1
        }
        return limit
    }

    /// The high bit of each zero byte of `x` set. Bytes above the lowest zero byte may
    /// be flagged falsely (a borrow runs up), the lowest never: so its position, the
    /// one asked for, is exact.
    @inlinable @inline(__always)
    static func zeroBytes(_ x: UInt64) -> UInt64 {
        (x &- 0x0101_0101_0101_0101) & ~x & 0x8080_8080_8080_8080
    }
}
