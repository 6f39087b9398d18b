/// Where a component's tuples go. `emit` returns once the tuple is taken (it may wait
/// for room: flow control) or dropped and counted (its destination is down).
protocol TupleEmitter: AnyObject {
    func emit(_ tuple: Tuple, now: UInt64)
}

/// What a worker runs: the top-n topology's spouts, counters, rankers and total ranker
/// (thesis fig. 5.2; storm-starter's RollingTopWords has the same shape).
///
/// A component is driven by its worker's thread only: `process` for each input tuple,
/// `tick` whenever the worker wakes. It is finished when it has sent its last tuple.
protocol Component: AnyObject {
    var isFinished: Bool { get }
    func process(_ tuple: Tuple, now: UInt64, out: TupleEmitter)
    /// Periodic work (emit intervals, window slots, a spout's next tuples). Returns
    /// whether it did anything.
    func tick(now: UInt64, out: TupleEmitter) -> Bool
    /// The earliest time `tick` has work, for the worker's idle wait.
    func nextDeadline(now: UInt64) -> UInt64
}

/// Reads its share of the trace (every `stride`-th name from `offset`) and sends each
/// name to the counter that owns it; at the end tells every counter so.
final class SpoutComponent: Component {
    let id: UInt16
    let trace: [UserName]
    var cursor: Int
    let stride: Int
    let counters: [UInt16]
    let config: StormConfig
    /// Nanoseconds between tuples (0: no pacing); `due` is when the next is.
    let gap: UInt64
    var due: UInt64 = 0
    private(set) var isFinished = false
    static let burst = 32

    init(id: UInt16, replica: Int, spouts: Int, trace: [UserName], config: StormConfig) {
        self.id = id
        self.trace = trace
        cursor = replica
        stride = spouts
        self.config = config
        counters = config.workers(.counter).map(\.id)
        gap = config.spoutRate > 0 ? UInt64(1e9 / config.spoutRate) : 0
    }

    func process(_ tuple: Tuple, now: UInt64, out: TupleEmitter) {}

    func tick(now: UInt64, out: TupleEmitter) -> Bool {
        guard !isFinished else { return false }
        if due == 0 { due = now }
        var sent = 0
        while sent < Self.burst && cursor < trace.count && (gap == 0 || due <= now) {
            let user = trace[cursor]
            cursor += stride
            out.emit(Tuple(destination: config.owner(of: user, among: counters), source: id, kind: .user, user: user,
                           created: now), now: now)
            due &+= gap
            sent += 1
        }
        if cursor >= trace.count {
            for c in counters { out.emit(Tuple(destination: c, source: id, kind: .endOfStream, user: .none, created: now), now: now) }
            isFinished = true
        }
        return sent > 0 || isFinished
    }

    func nextDeadline(now: UInt64) -> UInt64 { isFinished ? .max : (gap == 0 ? now : due) }
}

/// Counts each user over a sliding window and, every emit interval, sends the users
/// whose count changed to the ranker that owns them. After every spout's end of
/// stream it sends its last changes and tells every ranker.
final class CounterComponent: Component {
    let id: UInt16
    let config: StormConfig
    let rankers: [UInt16]
    let spouts: Int
    var window: SlidingWindowCounter
    var ended = 0
    var nextEmit: UInt64 = 0
    var nextSlot: UInt64 = 0
    private(set) var isFinished = false

    init(id: UInt16, config: StormConfig) {
        self.id = id
        self.config = config
        rankers = config.workers(.ranker).map(\.id)
        spouts = config.workers(.spout).count
        window = SlidingWindowCounter(slots: config.windowSlots)
    }

    func process(_ tuple: Tuple, now: UInt64, out: TupleEmitter) {
        switch tuple.kind {
        case .user: window.increment(tuple.user)
        case .endOfStream:
            ended += 1
            if ended == spouts {
                emitChanged(now: now, out: out)
                for r in rankers { out.emit(Tuple(destination: r, source: id, kind: .endOfStream, user: .none, created: now), now: now) }
                isFinished = true
            }
        default: break
        }
    }

    func tick(now: UInt64, out: TupleEmitter) -> Bool {
        if nextEmit == 0 { nextEmit = now &+ config.emitInterval; nextSlot = now &+ config.slotLength }
        var did = false
        if now >= nextSlot {
            window.advance()
            nextSlot &+= config.slotLength
            did = true
        }
        if now >= nextEmit && !isFinished {
            emitChanged(now: now, out: out)
            nextEmit &+= config.emitInterval
            did = true
        }
        return did
    }

    func emitChanged(now: UInt64, out: TupleEmitter) {
        window.takeChanged { user, count in
            out.emit(Tuple(destination: config.owner(of: user, among: rankers), source: id, kind: .count, user: user,
                           count: count, created: now), now: now)
        }
    }

    func nextDeadline(now: UInt64) -> UInt64 { nextEmit == 0 ? now : min(nextEmit, nextSlot) }
}

/// Keeps the latest count of each user it owns and, every emit interval, sends its top
/// n to the total ranker; after every counter's end of stream, its final top n.
final class RankerComponent: Component {
    let id: UInt16
    let config: StormConfig
    let total: UInt16
    let counters: Int
    var counts: [UserName: UInt64] = [:]
    var ended = 0
    var nextEmit: UInt64 = 0
    private(set) var isFinished = false

    init(id: UInt16, config: StormConfig) {
        self.id = id
        self.config = config
        total = config.workers(.total)[0].id
        counters = config.workers(.counter).count
    }

    func process(_ tuple: Tuple, now: UInt64, out: TupleEmitter) {
        switch tuple.kind {
        case .count:
            if tuple.count == 0 { counts[tuple.user] = nil } else { counts[tuple.user] = tuple.count }
        case .endOfStream:
            ended += 1
            if ended == counters {
                emitRanking(now: now, out: out)
                out.emit(Tuple(destination: total, source: id, kind: .endOfStream, user: .none, created: now), now: now)
                isFinished = true
            }
        default: break
        }
    }

    func tick(now: UInt64, out: TupleEmitter) -> Bool {
        if nextEmit == 0 { nextEmit = now &+ config.emitInterval }
        guard now >= nextEmit && !isFinished else { return false }
        emitRanking(now: now, out: out)
        nextEmit &+= config.emitInterval
        return true
    }

    func emitRanking(now: UInt64, out: TupleEmitter) {
        let top = RankEntry.top(config.topN, of: counts.lazy.map { RankEntry(user: $0.key, count: $0.value) })
        if top.isEmpty {
            out.emit(Tuple(destination: total, source: id, kind: .rank, user: .none, created: now), now: now)
        }
        for (i, e) in top.enumerated() {
            out.emit(Tuple(destination: total, source: id, kind: .rank, user: e.user, count: e.count, position: UInt8(i),
                           listLength: UInt8(top.count), created: now), now: now)
        }
    }

    func nextDeadline(now: UInt64) -> UInt64 { nextEmit == 0 ? now : nextEmit }
}

/// A ranking the total ranker reports.
public struct Ranking: Sendable {
    public var time: UInt64
    public var entries: [RankEntry]
    /// True for the ranking after every ranker's end of stream.
    public var isFinal: Bool
}

/// Merges the rankers' latest lists into the global top n, reported every emit
/// interval and once more, as final, after every ranker's end of stream.
final class TotalRankerComponent: Component {
    let id: UInt16
    let config: StormConfig
    let rankers: Int
    /// Per ranker: its latest complete list, and the one being received.
    var lists: [UInt16: [RankEntry]] = [:]
    var partial: [UInt16: [RankEntry]] = [:]
    var ended = 0
    var nextReport: UInt64 = 0
    let report: (Ranking) -> Void
    private(set) var isFinished = false

    init(id: UInt16, config: StormConfig, report: @escaping (Ranking) -> Void) {
        self.id = id
        self.config = config
        rankers = config.workers(.ranker).count
        self.report = report
    }

    func process(_ tuple: Tuple, now: UInt64, out: TupleEmitter) {
        switch tuple.kind {
        case .rank:
            if tuple.listLength == 0 {
                lists[tuple.source] = []
                return
            }
            var list = tuple.position == 0 ? [] : partial[tuple.source, default: []]
            list.append(RankEntry(user: tuple.user, count: tuple.count))
            if list.count == Int(tuple.listLength) {
                lists[tuple.source] = list
                partial[tuple.source] = nil
            } else {
                partial[tuple.source] = list
            }
        case .endOfStream:
            ended += 1
            if ended == rankers {
                report(Ranking(time: now, entries: merged(), isFinal: true))
                isFinished = true
            }
        default: break
        }
    }

    func merged() -> [RankEntry] { RankEntry.top(config.topN, of: lists.values.joined()) }

    func tick(now: UInt64, out: TupleEmitter) -> Bool {
        if nextReport == 0 { nextReport = now &+ config.emitInterval }
        guard now >= nextReport && !isFinished else { return false }
        report(Ranking(time: now, entries: merged(), isFinal: false))
        nextReport &+= config.emitInterval
        return true
    }

    func nextDeadline(now: UInt64) -> UInt64 { nextReport == 0 ? now : nextReport }
}
