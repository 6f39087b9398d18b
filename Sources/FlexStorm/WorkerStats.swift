import Synchronization

/// A worker's counts and latency sums (thesis tables 6.2 and 6.4), written by its own
/// thread once per burst and read by the reporter at any time.
///
/// For each tuple a worker takes from its input queue it adds: *input* (arrival in the
/// queue -> taken out), *processing* (the component's work on it), *output* (made by the
/// upstream worker -> left that node's output queue: the mux's batching in demux mode)
/// and *network* (left the sender -> arrived in the queue: wire, kernel, receive
/// pipeline).
public final class WorkerStats: @unchecked Sendable {
    public let id: UInt16
    public let role: StormConfig.Role
    let processed = Atomic<UInt64>(0)
    let emitted = Atomic<UInt64>(0)
    let inputNs = Atomic<UInt64>(0)
    let processingNs = Atomic<UInt64>(0)
    let outputNs = Atomic<UInt64>(0)
    let networkNs = Atomic<UInt64>(0)
    /// When the worker took its first and (so far) last tuple, ns.
    let firstTupleAt = Atomic<UInt64>(0)
    let lastTupleAt = Atomic<UInt64>(0)

    init(id: UInt16, role: StormConfig.Role) {
        self.id = id
        self.role = role
    }

    /// One burst's sums.
    struct Burst {
        var tuples: UInt64 = 0, input: UInt64 = 0, processing: UInt64 = 0, output: UInt64 = 0, network: UInt64 = 0
        @inline(__always) mutating func add(_ t: Tuple, takenAt: UInt64) {
            tuples &+= 1
            input &+= takenAt &- min(t.arrived, takenAt)
            output &+= t.sent &- min(t.created, t.sent)
            network &+= t.arrived &- min(t.sent, t.arrived)
        }
    }

    func add(_ b: Burst, at now: UInt64) {
        guard b.tuples > 0 else { return }
        if firstTupleAt.load(ordering: .relaxed) == 0 { firstTupleAt.store(now, ordering: .relaxed) }
        lastTupleAt.store(now, ordering: .relaxed)
        processed.wrappingAdd(b.tuples, ordering: .relaxed)
        inputNs.wrappingAdd(b.input, ordering: .relaxed)
        processingNs.wrappingAdd(b.processing, ordering: .relaxed)
        outputNs.wrappingAdd(b.output, ordering: .relaxed)
        networkNs.wrappingAdd(b.network, ordering: .relaxed)
    }

    func countEmitted(_ n: UInt64) { emitted.wrappingAdd(n, ordering: .relaxed) }

    public var snapshot: Snapshot {
        Snapshot(id: id, role: role, processed: processed.load(ordering: .relaxed), emitted: emitted.load(ordering: .relaxed),
                 inputNs: inputNs.load(ordering: .relaxed), processingNs: processingNs.load(ordering: .relaxed),
                 outputNs: outputNs.load(ordering: .relaxed), networkNs: networkNs.load(ordering: .relaxed),
                 firstTupleAt: firstTupleAt.load(ordering: .relaxed), lastTupleAt: lastTupleAt.load(ordering: .relaxed))
    }

    public struct Snapshot: Sendable {
        public var id: UInt16
        public var role: StormConfig.Role
        public var processed: UInt64, emitted: UInt64
        public var inputNs: UInt64, processingNs: UInt64, outputNs: UInt64, networkNs: UInt64
        public var firstTupleAt: UInt64, lastTupleAt: UInt64
    }
}
