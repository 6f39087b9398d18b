/// A worker's TCP sessions by flow id, without hashing.
///
/// A kernel TCP port's flow id names its queue (top 4 bits), a generation (the next
/// 12) and the connection's slot (low 16), and slots are reused lowest first: the
/// queue and the slot index an array of that queue's sessions, grown on demand, and
/// the whole id, kept with the session, tells the connection now in a slot from one
/// that held it before (a lookup of the old id finds nothing).
///
/// Invariant: `count` is the number of entries holding a session. Storing a session
/// where another flow's session is replaces that one (its connection is gone: the
/// slot was reused).
struct SessionTable {
    typealias Entry = (flow: UInt32, session: Session?)
    private var queues: [ContiguousArray<Entry>] = Array(repeating: [], count: 16)
    private(set) var count = 0

    @inline(__always) static func place(_ flow: UInt32) -> (queue: Int, slot: Int) { (Int(flow >> 28), Int(flow & 0xFFFF)) }

    subscript(flow: UInt32) -> Session? {
        get {
            let (q, i) = Self.place(flow)
            guard i < queues[q].count, queues[q][i].flow == flow else { return nil }
            return queues[q][i].session
        }
        set {
            guard let newValue else { removeValue(forKey: flow); return }
            let (q, i) = Self.place(flow)
            if i >= queues[q].count {
                let grown = min(1 << 16, max(i + 1, 2 * queues[q].count))
                queues[q].append(contentsOf: repeatElement(Entry(0, nil), count: grown - queues[q].count))
            }
            if queues[q][i].session == nil { count += 1 }
            queues[q][i] = (flow, newValue)
        }
    }

    /// Forgets `flow`'s session; returns it, or nil if the table holds none for it.
    @discardableResult
    mutating func removeValue(forKey flow: UInt32) -> Session? {
        let (q, i) = Self.place(flow)
        guard i < queues[q].count, queues[q][i].flow == flow, let s = queues[q][i].session else { return nil }
        queues[q][i] = Entry(0, nil)
        count -= 1
        return s
    }
}
