import FlexNIC

/// A tuple of the top-n users topology, as it travels between workers and sits in a
/// worker's input queue.
///
/// Wire format (the DCCP payload, 64 bytes, big-endian):
///
/// | offset | bytes | field |
/// |---|---|---|
/// | 0 | 2 | destination worker id (the steering table's key) |
/// | 2 | 2 | source worker id |
/// | 4 | 1 | kind: 1 user, 2 count, 3 rank, 4 end of stream |
/// | 5 | 1 | rank: position in the ranking (0-based) |
/// | 6 | 1 | rank: entries in the ranking |
/// | 7 | 1 | zero |
/// | 8 | 8 | count |
/// | 16 | 8 | created: ns (CLOCK_MONOTONIC) when the emitting worker made it |
/// | 24 | 8 | sent: ns when it left the sender's output queue |
/// | 32 | 24 | user name, zero-padded |
/// | 56 | 8 | zero |
///
/// `arrived` is not on the wire: the receive pipeline stamps it when it places the
/// tuple into the input queue. One machine's monotonic clock serves every node on it
/// (network namespaces share it), so the latency split is exact in the cluster tests.
public struct Tuple: BitwiseCopyable, Sendable, Equatable {
    public enum Kind: UInt8, Sendable, BitwiseCopyable {
        /// A user was active (spout -> counter).
        case user = 1
        /// The user's count in the window (counter -> ranker).
        case count = 2
        /// One entry of a ranker's top-n list (ranker -> total ranker).
        case rank = 3
        /// The sender has emitted its last tuple (finite traces).
        case endOfStream = 4
    }

    public static let wireLength = 64

    public var destination: UInt16
    public var source: UInt16
    public var kind: Kind
    public var position: UInt8 = 0
    public var listLength: UInt8 = 0
    public var count: UInt64 = 0
    public var user: UserName
    public var created: UInt64 = 0
    public var sent: UInt64 = 0
    public var arrived: UInt64 = 0

    public init(destination: UInt16, source: UInt16, kind: Kind, user: UserName, count: UInt64 = 0,
                position: UInt8 = 0, listLength: UInt8 = 0, created: UInt64 = 0) {
        self.destination = destination
        self.source = source
        self.kind = kind
        self.user = user
        self.count = count
        self.position = position
        self.listLength = listLength
        self.created = created
    }

    /// Decodes a wire tuple; nil if it is short, of an unknown kind, or its name is not
    /// a valid padded name (an end-of-stream tuple, and the one entry of an empty
    /// ranking, carry no name).
    @inline(__always)
    public init?(payload p: UnsafeRawPointer, length: Int, arrival: UInt64) {
        guard length >= Self.wireLength, let kind = Kind(rawValue: p.load(fromByteOffset: 4, as: UInt8.self)) else { return nil }
        let listLength = p.load(fromByteOffset: 6, as: UInt8.self)
        let user: UserName
        if kind == .endOfStream || (kind == .rank && listLength == 0) {
            user = UserName(unchecked: p + 32)
        } else {
            guard let u = UserName(wire: p + 32) else { return nil }
            user = u
        }
        self.init(destination: UInt16(bigEndian: p.loadUnaligned(as: UInt16.self)),
                  source: UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self)),
                  kind: kind, user: user,
                  count: UserName.loadBE64(p + 8),
                  position: p.load(fromByteOffset: 5, as: UInt8.self),
                  listLength: listLength,
                  created: UserName.loadBE64(p + 16))
        sent = UserName.loadBE64(p + 24)
        arrived = arrival
    }

    /// Writes the 64 wire bytes.
    @inline(__always)
    public func encode(to p: UnsafeMutableRawPointer) {
        p.storeBytes(of: destination.bigEndian, as: UInt16.self)
        p.storeBytes(of: source.bigEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: kind.rawValue, toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: position, toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: listLength, toByteOffset: 6, as: UInt8.self)
        p.storeBytes(of: UInt8(0), toByteOffset: 7, as: UInt8.self)
        UserName.storeBE64(count, p + 8)
        UserName.storeBE64(created, p + 16)
        UserName.storeBE64(sent, p + 24)
        user.write(to: p + 32)
        UserName.storeBE64(0, p + 56)
    }
}

extension UserName {
    /// The (unused) name of end-of-stream tuples.
    static let none = UserName(w0: 0, w1: 0, w2: 0)
    init(w0: UInt64, w1: UInt64, w2: UInt64) {
        self.w0 = w0
        self.w1 = w1
        self.w2 = w2
    }
}

/// Worker queues are the queues FlexStorm's receive program places tuples into.
extension SPSCRing: PlacementQueue where Element == Tuple {
    public var slotSize: Int { MemoryLayout<Tuple>.stride }

    public func decode(_ payload: UnsafeRawPointer, length: Int, arrival: UInt64, into slot: UnsafeMutableRawPointer) -> Bool {
        guard let t = Tuple(payload: payload, length: length, arrival: arrival) else { return false }
        slot.storeBytes(of: t, as: Tuple.self)
        return true
    }

    public func enqueue(decoded slot: UnsafeRawPointer) -> Bool { enqueue(slot.load(as: Tuple.self)) }

    public func place(_ payload: UnsafeRawPointer, length: Int, arrival: UInt64, overflow: UnsafeMutableRawPointer) -> SlotOutcome {
        guard let t = Tuple(payload: payload, length: length, arrival: arrival) else { return .undecodable }
        if enqueue(t) { return .enqueued }
        overflow.storeBytes(of: t, as: Tuple.self)
        return .full
    }
}
