#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// A lock-free single-producer/single-consumer ring (thesis 5.2.1, FastForward-style).
///
/// Every slot carries a "full" flag next to its value. The producer writes a value and
/// then sets the flag (release); the consumer reads the flag (acquire), then the value,
/// then clears the flag (release). Neither side ever reads the other's index, so the
/// only cache lines that move between cores are the slots themselves. Each index lives
/// on its own cache line, and a slot's stride is a power of two so no slot straddles a
/// line (a 56-byte `Descriptor` gets one 64-byte line).
///
/// Batched calls check only the last slot of the batch: slots are filled and emptied
/// in order, so if slot `i + n - 1` is empty (or full), all slots before it are too.
///
/// Invariant: exactly one thread calls the producer methods and exactly one thread the
/// consumer methods at any time.
public final class SPSCRing<Element: BitwiseCopyable>: @unchecked Sendable {
    public let capacity: Int
    @usableFromInline let mask: Int
    @usableFromInline let stride: Int
    @usableFromInline let valueOffset: Int
    @usableFromInline let slots: UnsafeMutableRawPointer
    /// Producer index at +0, consumer index at +64: separate cache lines.
    @usableFromInline let indices: UnsafeMutablePointer<Int>

    /// A ring of `capacity` slots (a power of two, at least 2).
    public init(capacity: Int) {
        precondition(capacity >= 2 && capacity & (capacity - 1) == 0, "ring capacity must be a power of two >= 2")
        self.capacity = capacity
        mask = capacity - 1
        let align = max(MemoryLayout<Element>.alignment, MemoryLayout<UInt32>.alignment)
        valueOffset = (MemoryLayout<UInt32>.size + align - 1) / align * align
        var s = 8
        while s < valueOffset + MemoryLayout<Element>.size { s <<= 1 }
        stride = s
        var p: UnsafeMutableRawPointer?
        guard posix_memalign(&p, 64, capacity * s) == 0, let raw = p else { fatalError("SPSCRing: out of memory") }
        slots = raw
        for i in 0..<capacity {
            (raw + i * s).bindMemory(to: Atomic<UInt32>.self, capacity: 1).initialize(to: Atomic(0))
        }
        var q: UnsafeMutableRawPointer?
        guard posix_memalign(&q, 64, 128) == 0, let ix = q else { fatalError("SPSCRing: out of memory") }
        indices = ix.bindMemory(to: Int.self, capacity: 16)
        indices[0] = 0
        indices[8] = 0
    }

    deinit {
        free(slots)
        free(UnsafeMutableRawPointer(indices))
    }

    /// Bytes of memory the ring occupies (its memory limit is fixed at creation).
    public var memoryFootprint: Int { capacity * stride + 128 }

    @inlinable @inline(__always)
    func flag(_ i: Int) -> UnsafeMutablePointer<Atomic<UInt32>> {
        (slots + (i & mask) &* stride).assumingMemoryBound(to: Atomic<UInt32>.self)
    }

    @inlinable @inline(__always)
    func value(_ i: Int) -> UnsafeMutableRawPointer { slots + ((i & mask) &* stride &+ valueOffset) }

    // MARK: Producer

    /// Adds one element; false if the ring is full.
    @inlinable
    public func enqueue(_ element: Element) -> Bool {
        let head = indices[0]
        guard flag(head).pointee.load(ordering: .acquiring) == 0 else { return false }
        value(head).storeBytes(of: element, as: Element.self)
        flag(head).pointee.store(1, ordering: .releasing)
        indices[0] = head &+ 1
        return true
    }

    /// Adds up to `count` elements from `elements`, in order; returns how many fit.
    @inlinable
    public func enqueue(_ elements: UnsafePointer<Element>, count: Int) -> Int {
        let head = indices[0]
        let limit = min(count, capacity)
        var n = limit
        if n == 0 { return 0 }
        if flag(head &+ n &- 1).pointee.load(ordering: .acquiring) != 0 {
            // Not all of them fit: find how many do, one slot at a time.
            n = 0
            while n < limit && flag(head &+ n).pointee.load(ordering: .acquiring) == 0 { n &+= 1 }
        }
        for i in 0..<n {
            value(head &+ i).storeBytes(of: elements[i], as: Element.self)
            flag(head &+ i).pointee.store(1, ordering: .releasing)
        }
        indices[0] = head &+ n
        return n
    }

    /// Whether the next enqueue would fail (producer side only).
    @inlinable public var isFull: Bool { flag(indices[0]).pointee.load(ordering: .acquiring) != 0 }

    // MARK: Consumer

    /// Removes one element, or nil if the ring is empty.
    @inlinable
    public func dequeue() -> Element? {
        let tail = indices[8]
        guard flag(tail).pointee.load(ordering: .acquiring) != 0 else { return nil }
        let e = value(tail).load(as: Element.self)
        flag(tail).pointee.store(0, ordering: .releasing)
        indices[8] = tail &+ 1
        return e
    }

    /// Removes up to `maximum` elements into `buffer`, in order; returns how many.
    @inlinable
    public func dequeue(into buffer: UnsafeMutablePointer<Element>, maximum: Int) -> Int {
        let tail = indices[8]
        let limit = min(maximum, capacity)
        var n = limit
        if n == 0 { return 0 }
        if flag(tail &+ n &- 1).pointee.load(ordering: .acquiring) == 0 {
            n = 0
            while n < limit && flag(tail &+ n).pointee.load(ordering: .acquiring) != 0 { n &+= 1 }
        }
        for i in 0..<n {
            buffer[i] = value(tail &+ i).load(as: Element.self)
            flag(tail &+ i).pointee.store(0, ordering: .releasing)
        }
        indices[8] = tail &+ n
        return n
    }

    /// Whether the ring has nothing to dequeue (consumer side only).
    @inlinable public var isEmpty: Bool { flag(indices[8]).pointee.load(ordering: .acquiring) == 0 }
}
