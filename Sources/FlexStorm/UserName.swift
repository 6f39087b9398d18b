/// A user name of 1 to 24 bytes (Twitter handles have at most 15), stored inline as
/// three big-endian words padded with zero bytes, so it is copied, hashed and compared
/// without allocating.
///
/// Invariant: at least one byte; no zero byte inside the name. Comparing the words in
/// order is then the same as comparing the names' bytes (shorter prefix first).
public struct UserName: Hashable, Comparable, Sendable, BitwiseCopyable, CustomStringConvertible {
    public static let maxLength = 24
    public var w0: UInt64, w1: UInt64, w2: UInt64

    /// The name in `text`'s UTF-8 bytes; nil if empty, longer than 24 bytes, or
    /// containing a zero byte.
    public init?(_ text: some StringProtocol) {
        var bytes = Array(text.utf8)
        guard !bytes.isEmpty, bytes.count <= Self.maxLength, !bytes.contains(0) else { return nil }
        bytes += [UInt8](repeating: 0, count: Self.maxLength - bytes.count)
        self = bytes.withUnsafeBytes { UserName(unchecked: $0.baseAddress!) }
    }

    /// Reads 24 bytes that already hold a padded name.
    @inline(__always)
    init(unchecked p: UnsafeRawPointer) {
        w0 = Self.loadBE64(p)
        w1 = Self.loadBE64(p + 8)
        w2 = Self.loadBE64(p + 16)
    }

    /// Reads a padded name from the wire; nil if it breaks the invariant.
    @inline(__always)
    init?(wire p: UnsafeRawPointer) {
        guard p.load(as: UInt8.self) != 0 else { return nil }
        var ended = false
        for i in 1..<Self.maxLength {
            let zero = p.load(fromByteOffset: i, as: UInt8.self) == 0
            if ended && !zero { return nil }
            ended = ended || zero
        }
        self.init(unchecked: p)
    }

    /// Writes the 24 padded bytes.
    @inline(__always)
    func write(to p: UnsafeMutableRawPointer) {
        Self.storeBE64(w0, p)
        Self.storeBE64(w1, p + 8)
        Self.storeBE64(w2, p + 16)
    }

    public var length: Int {
        if w2 != 0 { return 24 - w2.trailingZeroBitCount / 8 }
        if w1 != 0 { return 16 - w1.trailingZeroBitCount / 8 }
        return 8 - w0.trailingZeroBitCount / 8
    }

    public var description: String {
        var bytes = [UInt8](repeating: 0, count: Self.maxLength)
        bytes.withUnsafeMutableBytes { write(to: $0.baseAddress!) }
        return String(decoding: bytes.prefix(length), as: UTF8.self)
    }

    /// A hash that is the same in every process (Swift's `Hasher` is seeded per
    /// process): fields grouping must send a user to the same worker from every node.
    @inline(__always)
    public var groupingHash: UInt64 {
        var h = w0 &* 0x9E37_79B9_7F4A_7C15
        h = (h ^ (h >> 29) ^ w1) &* 0xBF58_476D_1CE4_E5B9
        h = (h ^ (h >> 32) ^ w2) &* 0x94D0_49BB_1331_11EB
        return h ^ (h >> 31)
    }

    public static func < (a: UserName, b: UserName) -> Bool {
        (a.w0, a.w1, a.w2) < (b.w0, b.w1, b.w2)
    }

    @inline(__always) static func loadBE64(_ p: UnsafeRawPointer) -> UInt64 {
        UInt64(bigEndian: p.loadUnaligned(as: UInt64.self))
    }
    @inline(__always) static func storeBE64(_ v: UInt64, _ p: UnsafeMutableRawPointer) {
        p.storeBytes(of: v.bigEndian, as: UInt64.self)
    }
}
