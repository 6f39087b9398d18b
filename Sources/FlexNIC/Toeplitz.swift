import FlexWire

/// The Toeplitz hash that NICs use for receive-side scaling (RSS).
///
/// Input bytes are hashed most-significant bit first: for every set input bit k the
/// 32-bit window of the key starting at bit k is XORed into the result. IPv4 4-tuples
/// are fed as source address, destination address, source port, destination port, all
/// in network order, which reproduces the Microsoft RSS verification suite (and DPDK's
/// `app/test/test_thash.c`).
///
/// The fast path is table driven: for every input byte position and byte value the
/// XOR of its eight windows is precomputed, so a 12-byte 4-tuple costs 12 loads.
public struct ToeplitzHash: Sendable {
    /// The Microsoft RSS verification key (40 bytes), DPDK's and most drivers' default.
    public static let microsoftKey: [UInt8] = [
        0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3,
        0x8f, 0xb0, 0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3,
        0x80, 0x30, 0xf2, 0x0c, 0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
    ]

    public let key: [UInt8]
    /// Longest input the key covers: key length - 4 bytes.
    public let maximumInputLength: Int
    /// table[position * 256 + byte]
    @usableFromInline let table: [UInt32]

    public init(key: [UInt8] = ToeplitzHash.microsoftKey) {
        precondition(key.count >= 8, "a Toeplitz key needs at least 8 bytes")
        self.key = key
        maximumInputLength = key.count - 4
        var t = [UInt32](repeating: 0, count: maximumInputLength * 256)
        for position in 0..<maximumInputLength {
            var windows = [UInt32](repeating: 0, count: 8)
            for bit in 0..<8 { windows[bit] = Self.window(key, at: position * 8 + bit) }
            for byte in 0..<256 {
                var h: UInt32 = 0
                for bit in 0..<8 where byte & (0x80 >> bit) != 0 { h ^= windows[bit] }
                t[position * 256 + byte] = h
            }
        }
        table = t
    }

    /// The 32 key bits starting at bit `k` (MSB of byte 0 is bit 0).
    static func window(_ key: [UInt8], at k: Int) -> UInt32 {
        var w: UInt32 = 0
        for i in 0..<32 {
            let bit = k + i
            let set = key[bit / 8] & (0x80 >> UInt8(bit % 8)) != 0
            w = w << 1 | (set ? 1 : 0)
        }
        return w
    }

    /// Bit-by-bit reference implementation, straight from the definition (tests check
    /// the table against it).
    public func referenceHash(_ input: [UInt8]) -> UInt32 {
        precondition(input.count <= maximumInputLength)
        var h: UInt32 = 0
        for (i, byte) in input.enumerated() {
            for bit in 0..<8 where byte & (0x80 >> UInt8(bit)) != 0 {
                h ^= Self.window(key, at: i * 8 + bit)
            }
        }
        return h
    }

    /// Hashes `count` bytes at `bytes` (count <= maximumInputLength).
    @inlinable
    public func hash(_ bytes: UnsafeRawPointer, count: Int) -> UInt32 {
        precondition(count <= maximumInputLength, "input longer than the key covers")
        return table.withUnsafeBufferPointer { t in
            var h: UInt32 = 0
            var base = 0
            for i in 0..<count {
                h ^= t[base &+ Int(bytes.load(fromByteOffset: i, as: UInt8.self))]
                base &+= 256
            }
            return h
        }
    }

    /// Hashes an IPv4 pair (source, destination), 8 bytes.
    @inlinable
    public func hash(source: UInt32, destination: UInt32) -> UInt32 {
        table.withUnsafeBufferPointer { t in
            Self.mix(t, source, 0) ^ Self.mix(t, destination, 4)
        }
    }

    /// Hashes an IPv4 4-tuple (source, destination, source port, destination port),
    /// 12 bytes, with the table unrolled.
    @inlinable
    public func hash(source: UInt32, destination: UInt32, sourcePort: UInt16, destinationPort: UInt16) -> UInt32 {
        table.withUnsafeBufferPointer { t in
            let ports = UInt32(sourcePort) << 16 | UInt32(destinationPort)
            return Self.mix(t, source, 0) ^ Self.mix(t, destination, 4) ^ Self.mix(t, ports, 8)
        }
    }

    /// Symmetric 4-tuple hash: both directions of a flow hash alike. The addresses are
    /// ordered (smaller first) and, independently, the ports (smaller first) before
    /// hashing, as DPDK's `RTE_ETH_HASH_FUNCTION_SYMMETRIC_TOEPLITZ_SORT` does.
    @inlinable
    public func symmetricHash(source: UInt32, destination: UInt32, sourcePort: UInt16, destinationPort: UInt16) -> UInt32 {
        hash(source: min(source, destination), destination: max(source, destination),
             sourcePort: min(sourcePort, destinationPort), destinationPort: max(sourcePort, destinationPort))
    }

    /// Hashes an IPv6 pair at `addresses` (source then destination, 32 bytes in network
    /// order, as they lie in the header) and, when given, the ports: 36 bytes, as the
    /// Microsoft RSS verification suite and DPDK's `test_thash.c` define for IPv6. Needs
    /// a key of at least 40 bytes.
    @inlinable
    public func hashIPv6(addresses: UnsafeRawPointer, sourcePort: UInt16?, destinationPort: UInt16?) -> UInt32 {
        precondition(maximumInputLength >= 36, "IPv6 hashing needs a 40-byte key")
        return table.withUnsafeBufferPointer { t in
            var h: UInt32 = 0
            for w in 0..<8 { h ^= Self.mix(t, UInt32(bigEndian: addresses.loadUnaligned(fromByteOffset: w &* 4, as: UInt32.self)), w &* 4) }
            if let sourcePort, let destinationPort { h ^= Self.mix(t, UInt32(sourcePort) << 16 | UInt32(destinationPort), 32) }
            return h
        }
    }

    /// Symmetric IPv6 4-tuple hash: the two addresses (compared as 128-bit numbers) and
    /// the two ports each put in order before hashing, like `symmetricHash`.
    @inlinable
    public func symmetricHashIPv6(addresses: UnsafeRawPointer, sourcePort: UInt16, destinationPort: UInt16) -> UInt32 {
        let a = IPv6Header.address(addresses), b = IPv6Header.address(addresses + 16)
        var ordered = (a < b ? a : b).bigEndian, second = (a < b ? b : a).bigEndian
        return withUnsafeBytes(of: &ordered) { first in
            withUnsafeBytes(of: &second) { last in
                precondition(maximumInputLength >= 36, "IPv6 hashing needs a 40-byte key")
                return table.withUnsafeBufferPointer { t in
                    var h: UInt32 = 0
                    for w in 0..<4 {
                        h ^= Self.mix(t, UInt32(bigEndian: first.loadUnaligned(fromByteOffset: w &* 4, as: UInt32.self)), w &* 4)
                        h ^= Self.mix(t, UInt32(bigEndian: last.loadUnaligned(fromByteOffset: w &* 4, as: UInt32.self)), 16 &+ w &* 4)
                    }
                    return h ^ Self.mix(t, UInt32(min(sourcePort, destinationPort)) << 16 | UInt32(max(sourcePort, destinationPort)), 32)
                }
            }
        }
    }

    /// XOR of the table entries of the four bytes of `word` (network order) at
    /// input positions `position ..< position + 4`.
    @inlinable @inline(__always)
    static func mix(_ t: UnsafeBufferPointer<UInt32>, _ word: UInt32, _ position: Int) -> UInt32 {
        let b = position &* 256
        return t[b &+ Int(word >> 24)] ^ t[b &+ 256 &+ Int(word >> 16 & 0xFF)]
            ^ t[b &+ 512 &+ Int(word >> 8 & 0xFF)] ^ t[b &+ 768 &+ Int(word & 0xFF)]
    }
}
