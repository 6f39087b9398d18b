import Synchronization

/// Maps a hash to a queue, as a NIC's RSS indirection table does: entry
/// `hash & (count - 1)` names the queue. The count is a power of two (128 by default).
///
/// Entries are atomics, so the table can be re-programmed while packets flow: a
/// reader sees each entry either before or after an update, never a torn value, and
/// never waits.
public final class RedirectionTable: @unchecked Sendable {
    public static let defaultEntries = 128

    public let count: Int
    @usableFromInline let mask: UInt32
    @usableFromInline let entries: UnsafeMutablePointer<Atomic<UInt32>>

    /// A table of `entries` spreading `queues` queues round-robin.
    public init(entries: Int = RedirectionTable.defaultEntries, queues: Int) {
        precondition(entries > 0 && entries & (entries - 1) == 0, "redirection table size must be a power of two")
        precondition(queues > 0, "a redirection table needs at least one queue")
        count = entries
        mask = UInt32(entries - 1)
        self.entries = .allocate(capacity: entries)
        for i in 0..<entries { (self.entries + i).initialize(to: Atomic(UInt32(i % queues))) }
    }

    deinit {
        entries.deinitialize(count: count)
        entries.deallocate()
    }

    /// The entry `hash` selects: with key steering, the key's shard.
    @inlinable @inline(__always)
    public func entry(for hash: UInt32) -> Int { Int(hash & mask) }

    /// The queue for `hash`.
    @inlinable @inline(__always)
    public func queue(for hash: UInt32) -> Int {
        Int(entries[Int(hash & mask)].load(ordering: .relaxed))
    }

    /// The queue for `hash`, and whatever its writer did before it wrote the entry.
    @inlinable @inline(__always)
    public func queueAcquiring(for hash: UInt32) -> Int {
        Int(entries[Int(hash & mask)].load(ordering: .acquiring))
    }

    public subscript(index: Int) -> Int {
        get { Int(entries[index].load(ordering: .relaxed)) }
        set { entries[index].store(UInt32(newValue), ordering: .releasing) }
    }

    /// Rewrites every entry (e.g. to move load between cores) without pausing readers.
    public func update(_ queues: [Int]) {
        precondition(queues.count == count, "expected \(count) entries")
        for (i, q) in queues.enumerated() { self[i] = q }
    }

    /// The current entries (each read on its own: a table re-programmed meanwhile may
    /// show a mix of old and new entries).
    public var snapshot: [Int] { (0..<count).map { self[$0] } }
}
