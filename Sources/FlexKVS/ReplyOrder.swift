/// Keeps a TCP session's replies in request order when some requests run on other
/// workers (key steering): a forwarded request leaves a hole in the session's output
/// at the point its reply belongs; replies run here go on after it; only the bytes
/// before the first hole may be sent.
///
/// Invariant: holes are in output order, their offsets ascending and within the
/// output; a sequence number names one outstanding hole.
struct ReplyOrder {
    struct Hole {
        var offset: Int
        var sequence: UInt16
    }

    private(set) var holes: [Hole] = []
    private var nextSequence: UInt16 = 0

    init() { holes.reserveCapacity(16) }

    var isEmpty: Bool { holes.isEmpty }

    /// Opens a hole at the end of `output`; returns its sequence number.
    mutating func open(at offset: Int) -> UInt16 {
        nextSequence &+= 1
        holes.append(Hole(offset: offset, sequence: nextSequence))
        return nextSequence
    }

    /// Puts a forwarded request's reply where its hole is. False if no such hole.
    mutating func fill(_ sequence: UInt16, with reply: UnsafeRawBufferPointer, in output: inout SessionBytes) -> Bool {
        guard let i = holes.firstIndex(where: { $0.sequence == sequence }) else { return false }
        output.insert(contentsOf: reply, at: holes[i].offset)
        for j in (i + 1)..<holes.count { holes[j].offset += reply.count }
        holes.remove(at: i)
        return true
    }

    /// Bytes of output that may be sent now.
    func sendable(ofOutput count: Int) -> Int { holes.first?.offset ?? count }

    /// The first `n` output bytes were sent and removed.
    mutating func sent(_ n: Int) {
        for j in holes.indices { holes[j].offset -= n }
    }
}
