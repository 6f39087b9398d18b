/// A session's growable run of bytes: the requests it received and not yet parsed, or
/// the replies built for it and not yet sent. An `[UInt8]` did this job at several times
/// the cost on the request path (issue 16): appending a 24-byte header took about 100
/// instructions through the generic collection path, and emptying an empty array 80.
/// Here an append is a capacity check and a `memcpy`, and emptying sets the count.
///
/// Invariants: `base` holds `capacity` bytes, of which the first `count` are
/// initialized; `0 <= count <= capacity`. Capacity only grows (doubling), as a session's
/// array kept its capacity when emptied: a connection that once held a large reply
/// keeps the room until it closes. Noncopyable: its one owner, the session, frees it.
/// Single-threaded, as its session.
public struct SessionBytes: ~Copyable {
    private var base: UnsafeMutableRawPointer
    public private(set) var count = 0
    private(set) var capacity: Int

    init(capacity: Int) {
        self.capacity = max(capacity, 16)
        base = .allocate(byteCount: self.capacity, alignment: 8)
    }

    deinit { base.deallocate() }

    public var isEmpty: Bool { count == 0 }

    /// The byte at `i` (`0 <= i < count`).
    public subscript(i: Int) -> UInt8 {
        precondition(i >= 0 && i < count, "byte \(i) of \(count)")
        return base.load(fromByteOffset: i, as: UInt8.self)
    }

    /// The bytes, valid only inside `body` (an append may move them).
    @inline(__always)
    public func withUnsafeBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try body(UnsafeRawBufferPointer(start: base, count: count))
    }

    @inline(__always)
    mutating func append(contentsOf bytes: UnsafeRawBufferPointer) {
        guard let source = bytes.baseAddress else { return }
        if count &+ bytes.count > capacity { grow(toHold: count + bytes.count) }
        (base + count).copyMemory(from: source, byteCount: bytes.count)
        count &+= bytes.count
    }

    @inline(__always)
    mutating func append(_ byte: UInt8) {
        if count == capacity { grow(toHold: count + 1) }
        base.storeBytes(of: byte, toByteOffset: count, as: UInt8.self)
        count &+= 1
    }

    /// Inserts `bytes` at offset `at` (`0 <= at <= count`), moving what follows.
    mutating func insert(contentsOf bytes: UnsafeRawBufferPointer, at offset: Int) {
        precondition(offset >= 0 && offset <= count, "insert at \(offset) of \(count)")
        guard let source = bytes.baseAddress, bytes.count > 0 else { return }
        if count + bytes.count > capacity { grow(toHold: count + bytes.count) }
        (base + offset + bytes.count).copyMemory(from: base + offset, byteCount: count - offset)  // memmove
        (base + offset).copyMemory(from: source, byteCount: bytes.count)
        count += bytes.count
    }

    /// Empties the run; the capacity stays.
    @inline(__always)
    public mutating func removeAll() { count = 0 }

    /// Drops the first `n` bytes (`0 <= n <= count`), moving the rest to the front.
    mutating func removeFirst(_ n: Int) {
        precondition(n >= 0 && n <= count, "remove \(n) of \(count)")
        base.copyMemory(from: base + n, byteCount: count - n)  // memmove
        count -= n
    }

    /// Drops the bytes from offset `length` on (`0 <= length <= count`).
    mutating func truncate(to length: Int) {
        precondition(length >= 0 && length <= count, "truncate \(count) to \(length)")
        count = length
    }

    @inline(never)
    private mutating func grow(toHold needed: Int) {
        var newCapacity = capacity
        while newCapacity < needed { newCapacity *= 2 }
        let grown = UnsafeMutableRawPointer.allocate(byteCount: newCapacity, alignment: 8)
        grown.copyMemory(from: base, byteCount: count)
        base.deallocate()
        base = grown
        capacity = newCapacity
    }
}
