/// Unaligned network-order loads and stores on raw packet memory. Callers check bounds
/// first (the header views do so once, when they are made).
extension UnsafeRawPointer {
    @inlinable @inline(__always) public func loadBE16(at offset: Int) -> UInt16 {
        UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self))
    }
    @inlinable @inline(__always) public func loadBE32(at offset: Int) -> UInt32 {
        UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
    @inlinable @inline(__always) public func loadByte(at offset: Int) -> UInt8 {
        load(fromByteOffset: offset, as: UInt8.self)
    }
}

extension UnsafeMutableRawPointer {
    @inlinable @inline(__always) public func storeBE16(_ value: UInt16, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self)
    }
    @inlinable @inline(__always) public func storeBE32(_ value: UInt32, at offset: Int) {
        storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self)
    }
    @inlinable @inline(__always) public func storeByte(_ value: UInt8, at offset: Int) {
        storeBytes(of: value, toByteOffset: offset, as: UInt8.self)
    }
}

extension UnsafeMutableRawPointer {
    /// Exchanges two `T`-sized fields at byte offsets `a` and `b` (address swaps).
    @inlinable @inline(__always) public func swapFields<T: FixedWidthInteger>(_: T.Type, at a: Int, _ b: Int) {
        let x = loadUnaligned(fromByteOffset: a, as: T.self)
        storeBytes(of: loadUnaligned(fromByteOffset: b, as: T.self), toByteOffset: a, as: T.self)
        storeBytes(of: x, toByteOffset: b, as: T.self)
    }
}

/// A transport header that starts with 16-bit source and destination ports (UDP, TCP,
/// DCCP): the accessors they share.
public protocol PortHeader {
    var base: UnsafeMutableRawPointer { get }
}

extension PortHeader {
    @inlinable public var sourcePort: UInt16 {
        get { UnsafeRawPointer(base).loadBE16(at: 0) }
        nonmutating set { base.storeBE16(newValue, at: 0) }
    }
    @inlinable public var destinationPort: UInt16 {
        get { UnsafeRawPointer(base).loadBE16(at: 2) }
        nonmutating set { base.storeBE16(newValue, at: 2) }
    }
    /// Swaps source and destination ports in place (a reply's L4 step).
    @inlinable public func swapPorts() { base.swapFields(UInt16.self, at: 0, 2) }
}
