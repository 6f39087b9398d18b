/// Online rebalancing of key steering: run-time adaptation (as Morpheus adapts a
/// program to the traffic it sees) applied to the redirection table. Each round it
/// looks at the requests every shard served since the last round, adds them up per
/// worker (the worker the table names), and when the busiest worker carries clearly
/// more than its share it plans shard moves from the busiest worker to the idlest.
///
/// - Hysteresis: moves start when the busiest worker's load is `start` times the mean
///   or more, and go on only until it falls below `stop`; a moved shard stays put for
///   `cooldownRounds`. A skew that stays between the two bounds moves nothing.
/// - A move is planned only if it lowers the larger of the two workers' loads (a shard
///   hotter than the gap between them would only swap their roles): one shard that
///   carries more than a worker's share is left where it is.
/// - Guard: when `patience` rounds in a row made moves and the imbalance did not fall,
///   it pauses for `pauseRounds` (the load is not the kind moves can fix).
///
/// A value type with no clock and no threads of its own: the server calls `plan` once
/// per interval and carries the moves out (`KVStore.moveShard`).
public struct ShardBalancer: Sendable {
    public struct Policy: Sendable {
        /// Seconds between rounds (0: no rebalancing).
        public var interval = 1.0
        public var start = 1.10
        public var stop = 1.05
        /// A round whose requests (all workers) are fewer than this decides nothing.
        public var minimumRequests: UInt64 = 2_000
        public var movesPerRound = 4
        public var cooldownRounds = 5
        public var patience = 3
        public var pauseRounds = 30
        public init() {}
    }

    public let policy: Policy
    let workers: Int
    var previousCounts: [UInt64]
    var movedInRound: [Int]
    public private(set) var round = 0
    /// Whether the last rounds found the load skewed (between `start` and `stop`).
    public private(set) var balancing = false
    /// The busiest worker's load over the mean, in the last round that had traffic.
    public private(set) var imbalance = 1.0
    /// Rounds the guard kept from moving, in all.
    public private(set) var pausedRounds = 0
    var strikes = 0
    var pausedUntil = 0
    var imbalanceBeforeMoves: Double?

    public init(shards: Int, workers: Int, policy: Policy = Policy()) {
        self.policy = policy
        self.workers = workers
        previousCounts = Array(repeating: 0, count: shards)
        movedInRound = Array(repeating: Int.min / 2, count: shards)
    }

    /// One round. `counts` are the shards' request counters (cumulative), `owners` the
    /// worker each shard's entry names now. Returns the moves to make, in order.
    public mutating func plan(counts: [UInt64], owners: [Int]) -> [(shard: Int, to: Int)] {
        precondition(counts.count == previousCounts.count && owners.count == counts.count)
        round += 1
        let delta = zip(counts, previousCounts).map { $0 &- $1 }
        previousCounts = counts
        var load = [UInt64](repeating: 0, count: workers)
        for (s, n) in delta.enumerated() { load[owners[s]] += n }
        let total = load.reduce(0, +)
        guard workers > 1, total >= policy.minimumRequests else { return [] }
        let mean = Double(total) / Double(workers)
        imbalance = Double(load.max()!) / mean

        if let before = imbalanceBeforeMoves {
            strikes = imbalance < before * 0.97 ? 0 : strikes + 1
            imbalanceBeforeMoves = nil
            if strikes >= policy.patience {
                strikes = 0
                pausedUntil = round + policy.pauseRounds
            }
        } else {
            strikes = 0  // the last round moved nothing: the run of unhelpful moves ends
        }
        if imbalance >= policy.start { balancing = true } else if imbalance < policy.stop { balancing = false }
        guard round >= pausedUntil else {
            pausedRounds += 1
            return []
        }
        guard balancing else { return [] }

        var owners = owners
        var moves: [(shard: Int, to: Int)] = []
        for _ in 0..<policy.movesPerRound {
            let hot = load.indices.max { load[$0] < load[$1] }!
            let cold = load.indices.min { load[$0] < load[$1] }!
            guard Double(load[hot]) / mean >= policy.stop else { break }
            let gap = load[hot] - load[cold]
            // The shard whose load is nearest half the gap evens the pair out best.
            var best: Int?
            for s in owners.indices where owners[s] == hot && delta[s] > 0 && delta[s] < gap
                && round - movedInRound[s] > policy.cooldownRounds {
                if best == nil || absDistance(delta[s], gap / 2) < absDistance(delta[best!], gap / 2) { best = s }
            }
            guard let s = best else { break }
            load[hot] -= delta[s]
            load[cold] += delta[s]
            owners[s] = cold
            movedInRound[s] = round
            moves.append((s, cold))
        }
        if !moves.isEmpty { imbalanceBeforeMoves = imbalance }
        return moves
    }

    private func absDistance(_ a: UInt64, _ b: UInt64) -> UInt64 { a > b ? a - b : b - a }
}
