/// A fixed number of class instances that a hot path reads without counting references.
///
/// Reading an element of an array that a class holds costs a retain and a release: the
/// compiler cannot see that nothing releases the array while the element is in use. A
/// polling loop that reads a handful of such elements every round pays that on every
/// round. This is the same list as unretained references, read in place.
///
/// Invariants (the owner's to keep):
/// - every element set is kept alive by a strong reference elsewhere (usually the array
///   it was built from, or the object that made it) for as long as it may be read;
/// - a slot is set before it is read;
/// - `deallocate` is called once, by the owner's `deinit`.
///
/// It is a value holding a pointer: copies share the storage, and no copy may be used
/// after `deallocate`.
public struct UnretainedReferences<Element: AnyObject> {
    @usableFromInline let slots: UnsafeMutablePointer<Unmanaged<Element>>
    /// How many slots there are (set or not).
    public let capacity: Int

    /// `capacity` slots, none set.
    @inlinable
    public init(capacity: Int) {
        precondition(capacity > 0, "UnretainedReferences needs at least one slot")
        self.capacity = capacity
        slots = .allocate(capacity: capacity)
    }

    /// The elements of `elements`, in order (the caller keeps them alive).
    @inlinable
    public init(_ elements: [Element]) {
        self.init(capacity: max(1, elements.count))
        for (i, e) in elements.enumerated() { set(i, e) }
    }

    /// Points slot `i` at `element` (not retained).
    @inlinable
    public func set(_ i: Int, _ element: Element) {
        precondition(i >= 0 && i < capacity, "slot \(i) of \(capacity)")
        (slots + i).initialize(to: .passUnretained(element))
    }

    /// Runs `body` on the element in slot `i`, with no retain or release.
    @inlinable @inline(__always)
    public func with<T>(_ i: Int, _ body: (Element) throws -> T) rethrows -> T {
        assert(i >= 0 && i < capacity, "slot \(i) of \(capacity)")
        return try slots[i]._withUnsafeGuaranteedRef(body)
    }

    public func deallocate() { slots.deallocate() }
}
