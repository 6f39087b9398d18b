/// A fixed-capacity burst of packets, allocated once and reused for every burst (the
/// hot path allocates nothing). Not thread-safe: one batch belongs to one thread.
public final class PacketBatch: @unchecked Sendable {
    /// Burst size used across the project unless a caller picks another.
    public static let defaultCapacity = 32

    public let capacity: Int
    public let packets: UnsafeMutablePointer<Packet>
    /// Number of valid packets at the front of `packets`.
    public var count: Int = 0

    public init(capacity: Int = PacketBatch.defaultCapacity) {
        precondition(capacity > 0, "a batch holds at least one packet")
        self.capacity = capacity
        packets = .allocate(capacity: capacity)
    }

    deinit { packets.deallocate() }

    @inlinable public var isEmpty: Bool { count == 0 }
    @inlinable public var isFull: Bool { count == capacity }
    @inlinable public var freeSpace: Int { capacity &- count }

    @inlinable public subscript(i: Int) -> Packet {
        get { packets[i] }
        set { packets[i] = newValue }
    }

    /// Appends one packet; the caller checks `isFull` first.
    @inlinable public func append(_ p: Packet) {
        precondition(count < capacity, "batch overflow")
        packets[count] = p
        count &+= 1
    }

    /// Removes the first `n` packets, moving the rest to the front (after a partial send).
    @inlinable public func removeFirst(_ n: Int) {
        guard n > 0 else { return }
        let rest = count &- n
        if rest > 0 { (packets).update(from: packets + n, count: rest) }
        count = rest
    }

    /// Removes and returns the last packet; the caller checks `isEmpty` first.
    @inlinable public func removeLast() -> Packet {
        precondition(count > 0, "batch underflow")
        count &-= 1
        return packets[count]
    }

    @inlinable public func removeAll() { count = 0 }

    /// Raw pointer to the free slots, for shims that fill a burst in place.
    @inlinable public var freeSlots: UnsafeMutableRawPointer { UnsafeMutableRawPointer(packets + count) }
}
