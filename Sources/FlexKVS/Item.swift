import FlexNIC

/// Where an item lives: segment index + 1 in the high 32 bits (0 means "no item"), byte
/// offset in the low 32.
public typealias ItemRef = UInt64

/// What memcached's meta commands remember about an item besides its value.
public struct ItemMarks: OptionSet, Sendable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// Read at least once since it was stored (meta `h`).
    public static let fetched = ItemMarks(rawValue: 1)
    /// Invalidated (`md I`, `ms I`): served with `X` until replaced.
    public static let stale = ItemMarks(rawValue: 2)
    /// A client was given the win token (`W`) to recache it; others see `Z`.
    public static let tokenSent = ItemMarks(rawValue: 4)
    /// Its key was given base64-encoded (meta `b`) and is returned that way.
    public static let binaryKey = ItemMarks(rawValue: 8)
    /// Reads counted, 0...3 (two bits): an eviction moves an item with reads to the main
    /// log's head instead of dropping it (densest first), spending one of them.
    public var reads: Int { Int(rawValue >> 4) & 3 }
    /// One more read, saturating at 3.
    public mutating func countRead() { if reads < 3 { self = ItemMarks(rawValue: rawValue &+ 16) } }
    /// One read fewer (a round survived).
    public mutating func spendRead() { if reads > 0 { self = ItemMarks(rawValue: rawValue &- 16) } }
}

/// An item in a log segment. Layout (40-byte header, then key, then value, padded to 8):
///
/// | offset | field |
/// |---|---|
/// | 0 | record size (UInt32, header + key + value + padding) |
/// | 4 | key length (UInt8) |
/// | 5 | live (UInt8: 1 while the hash table points here) |
/// | 6 | marks (`ItemMarks`: fetched, stale, win token sent, binary key; bits 4-5: reads not yet spent) |
/// | 8 | value length (UInt32) |
/// | 12 | client flags (UInt32) |
/// | 16 | expiry (UInt32, server seconds; 0 never) |
/// | 20 | key hash (UInt32) |
/// | 24 | CAS unique (UInt64) |
/// | 32 | time stored (UInt64, server nanoseconds) |
///
/// The view does no checking: items are written only by `ItemLog`, which knows sizes.
public struct ItemView {
    public static let headerSize = 40
    public let base: UnsafeMutableRawPointer

    @inlinable public init(_ base: UnsafeMutableRawPointer) { self.base = base }

    @inlinable static func recordSize(keyLength: Int, valueLength: Int) -> Int {
        (headerSize + keyLength + valueLength + 7) & ~7
    }

    @inlinable public var recordSize: Int { Int(base.load(fromByteOffset: 0, as: UInt32.self)) }
    @inlinable public var keyLength: Int { Int(base.load(fromByteOffset: 4, as: UInt8.self)) }
    @inlinable public var isLive: Bool {
        get { base.load(fromByteOffset: 5, as: UInt8.self) != 0 }
        nonmutating set { base.storeBytes(of: newValue ? 1 : 0, toByteOffset: 5, as: UInt8.self) }
    }
    @inlinable public var marks: ItemMarks {
        get { ItemMarks(rawValue: base.load(fromByteOffset: 6, as: UInt8.self)) }
        nonmutating set { base.storeBytes(of: newValue.rawValue, toByteOffset: 6, as: UInt8.self) }
    }
    @inlinable public var valueLength: Int { Int(base.load(fromByteOffset: 8, as: UInt32.self)) }
    @inlinable public var flags: UInt32 { base.load(fromByteOffset: 12, as: UInt32.self) }
    @inlinable public var expiry: UInt32 {
        get { base.load(fromByteOffset: 16, as: UInt32.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 16, as: UInt32.self) }
    }
    @inlinable public var hash: UInt32 { base.load(fromByteOffset: 20, as: UInt32.self) }
    @inlinable public var cas: UInt64 {
        get { base.load(fromByteOffset: 24, as: UInt64.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 24, as: UInt64.self) }
    }
    @inlinable public var storedAt: UInt64 {
        get { base.load(fromByteOffset: 32, as: UInt64.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 32, as: UInt64.self) }
    }

    @inlinable public var key: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + Self.headerSize, count: keyLength)
    }
    @inlinable public var value: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: base + Self.headerSize + keyLength, count: valueLength)
    }

    @inlinable func keyEquals(_ k: UnsafeRawBufferPointer) -> Bool {
        guard k.count == keyLength else { return false }
        return memcmp(base + Self.headerSize, k.baseAddress!, k.count) == 0
    }

    /// Writes the header and key; the caller fills the value.
    func initialize(key: UnsafeRawBufferPointer, hash: UInt32, valueLength: Int, flags: UInt32, expiry: UInt32,
                    cas: UInt64, storedAt: UInt64) {
        initializeHeader(keyLength: key.count, hash: hash, valueLength: valueLength, flags: flags, expiry: expiry,
                         cas: cas, storedAt: storedAt)
        (base + Self.headerSize).copyMemory(from: key.baseAddress!, byteCount: key.count)
    }

    /// Writes the header of an item whose key and value are already in place after it
    /// (placed by the pipeline).
    func initializeHeader(keyLength: Int, hash: UInt32, valueLength: Int, flags: UInt32, expiry: UInt32,
                          cas: UInt64, storedAt: UInt64) {
        base.storeBytes(of: UInt32(Self.recordSize(keyLength: keyLength, valueLength: valueLength)), toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: UInt8(keyLength), toByteOffset: 4, as: UInt8.self)
        base.storeBytes(of: 1, toByteOffset: 5, as: UInt8.self)
        base.storeBytes(of: 0, toByteOffset: 6, as: UInt16.self)
        base.storeBytes(of: UInt32(valueLength), toByteOffset: 8, as: UInt32.self)
        base.storeBytes(of: flags, toByteOffset: 12, as: UInt32.self)
        base.storeBytes(of: expiry, toByteOffset: 16, as: UInt32.self)
        base.storeBytes(of: hash, toByteOffset: 20, as: UInt32.self)
        base.storeBytes(of: cas, toByteOffset: 24, as: UInt64.self)
        base.storeBytes(of: storedAt, toByteOffset: 32, as: UInt64.self)
    }

    /// Turns `size` bytes at `base` into a dead record, so segment walks step over them.
    static func writeDead(at base: UnsafeMutableRawPointer, size: Int) {
        base.storeBytes(of: UInt32(size), toByteOffset: 0, as: UInt32.self)
        base.storeBytes(of: 0, toByteOffset: 4, as: UInt16.self)  // key length 0, not live
    }
}
#if canImport(Glibc)
import Glibc
#endif
