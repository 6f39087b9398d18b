import Synchronization

/// Counters of one pipeline instance: per stage, per queue and per outcome. Written by
/// the one thread that runs that pipeline (plain relaxed load+store, no read-modify-
/// write), readable from any thread at any time.
public final class SteeringCounters: @unchecked Sendable {
    public let stageCount: Int
    /// Core queues plus the slow-path queue (the last one).
    public let queueCount: Int
    let cells: UnsafeMutablePointer<Atomic<UInt64>>
    let cellCount: Int
    /// Where each group of cells starts: fixed, reasons, stages, steered, full.
    let reasonBase: Int, stageBase: Int, steeredBase: Int, fullBase: Int

    enum Fixed: Int, CaseIterable {
        case packets = 0, dropped, replied, logged, segmentsFilled, replyErrors
    }
    static let reasons = 8

    init(stages: Int, queues: Int) {
        stageCount = stages
        queueCount = queues + 1
        reasonBase = Fixed.allCases.count
        stageBase = reasonBase + Self.reasons
        steeredBase = stageBase + stages
        fullBase = steeredBase + queueCount
        cellCount = fullBase + queueCount
        cells = .allocate(capacity: cellCount)
        for i in 0..<cellCount { (cells + i).initialize(to: Atomic(0)) }
    }

    deinit {
        cells.deinitialize(count: cellCount)
        cells.deallocate()
    }

    @inline(__always) func bump(_ i: Int, by n: UInt64 = 1) {
        cells[i].store(cells[i].load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }
    @inline(__always) func value(_ i: Int) -> UInt64 { cells[i].load(ordering: .relaxed) }

    @inline(__always) func count(_ f: Fixed, _ n: UInt64 = 1) { bump(f.rawValue, by: n) }
    @inline(__always) func countSlowPath(_ r: SlowPathReason) { bump(reasonBase + Int(r.rawValue)) }
    @inline(__always) func countMatch(stage: Int) { bump(stageBase + stage) }
    @inline(__always) func countSteered(queue: Int, _ n: Int) { bump(steeredBase + queue, by: UInt64(n)) }
    @inline(__always) func countFull(queue: Int, _ n: Int) { bump(fullBase + queue, by: UInt64(n)) }

    /// A consistent-enough copy for reports (each counter is read once).
    public var snapshot: Snapshot {
        Snapshot(
            packets: value(Fixed.packets.rawValue), dropped: value(Fixed.dropped.rawValue),
            replied: value(Fixed.replied.rawValue), logged: value(Fixed.logged.rawValue),
            segmentsFilled: value(Fixed.segmentsFilled.rawValue), replyErrors: value(Fixed.replyErrors.rawValue),
            slowPath: Dictionary(uniqueKeysWithValues: SlowPathReason.allCases.map { ($0, value(reasonBase + Int($0.rawValue))) }),
            stageMatched: (0..<stageCount).map { value(stageBase + $0) },
            queueSteered: (0..<queueCount).map { value(steeredBase + $0) },
            queueDroppedFull: (0..<queueCount).map { value(fullBase + $0) })
    }

    public struct Snapshot: Sendable, Equatable {
        public var packets: UInt64
        public var dropped: UInt64
        public var replied: UInt64
        public var logged: UInt64
        public var segmentsFilled: UInt64
        /// Replies that could not be built (e.g. no room for an Ack subheader).
        public var replyErrors: UInt64
        public var slowPath: [SlowPathReason: UInt64]
        public var stageMatched: [UInt64]
        /// Per queue, the slow-path queue last.
        public var queueSteered: [UInt64]
        public var queueDroppedFull: [UInt64]

        public var slowPathTotal: UInt64 { slowPath.values.reduce(0, +) }

        /// Adds another pipeline's counters (same program).
        public static func + (a: Snapshot, b: Snapshot) -> Snapshot {
            Snapshot(packets: a.packets + b.packets, dropped: a.dropped + b.dropped, replied: a.replied + b.replied,
                     logged: a.logged + b.logged, segmentsFilled: a.segmentsFilled + b.segmentsFilled,
                     replyErrors: a.replyErrors + b.replyErrors,
                     slowPath: a.slowPath.merging(b.slowPath, uniquingKeysWith: +),
                     stageMatched: zip(a.stageMatched, b.stageMatched).map { $0 + $1 },
                     queueSteered: zip(a.queueSteered, b.queueSteered).map { $0 + $1 },
                     queueDroppedFull: zip(a.queueDroppedFull, b.queueDroppedFull).map { $0 + $1 })
        }
    }
}
