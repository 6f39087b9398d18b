/// The Internet checksum (RFC 1071): a ones'-complement sum of 16-bit words, folded.
/// Accumulate pseudo-header words and byte ranges, then take `value`.
public struct InternetChecksum: Sendable {
    @usableFromInline var sum: UInt64 = 0

    @inlinable public init() {}

    /// Adds a 16-bit word in host order (as read from network order).
    @inlinable public mutating func add(_ word: UInt16) { sum &+= UInt64(word) }

    /// Adds a 32-bit value as two 16-bit words (an IPv4 address).
    @inlinable public mutating func add(_ word: UInt32) {
        sum &+= UInt64(word >> 16) &+ UInt64(word & 0xFFFF)
    }

    /// Adds `count` bytes at `base`, treated as big-endian words; an odd last byte is
    /// padded with zero, as RFC 1071 says. Ranges must start at even offsets of the
    /// covered data when several are added.
    @inlinable public mutating func add(bytes base: UnsafeRawPointer, count: Int) {
        var i = 0
        var acc: UInt64 = 0
        // 8 bytes at a time: sum 32-bit halves in native order, fix order at the end.
        while i &+ 8 <= count {
            let v = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            acc &+= (v & 0xFFFF_FFFF) &+ (v >> 32)
            i &+= 8
        }
        while i &+ 2 <= count {
            acc &+= UInt64(base.loadUnaligned(fromByteOffset: i, as: UInt16.self))
            i &+= 2
        }
        if i < count { acc &+= UInt64(base.load(fromByteOffset: i, as: UInt8.self)) }
        // acc holds native-order (little-endian) 16-bit lanes; fold and swap once.
        while acc >> 16 != 0 { acc = (acc & 0xFFFF) &+ (acc >> 16) }
        sum &+= UInt64(UInt16(truncatingIfNeeded: acc).byteSwapped)
    }

    /// The checksum field value: the complement of the folded sum.
    @inlinable public var value: UInt16 {
        var s = sum
        while s >> 16 != 0 { s = (s & 0xFFFF) &+ (s >> 16) }
        return ~UInt16(truncatingIfNeeded: s)
    }

    /// Whether data that includes its own checksum field verifies (folded sum all ones).
    @inlinable public var verifies: Bool { value == 0 }
}
