import FlexIO
import Foundation
import Synchronization

/// Every node of a config in one process, each on its own kernel UDP port (the
/// config's addresses must be this machine's): for single-machine runs, the
/// correctness tests and the side-by-side benchmark.
public final class LocalCluster: @unchecked Sendable {
    public let config: StormConfig
    public let mode: StormNode.Mode
    public let nodes: [StormNode]
    let rankings = RankingLog()

    public init(config: StormConfig, mode: StormNode.Mode, trace: [UserName]) throws {
        self.config = config
        self.mode = mode
        let sink = rankings
        nodes = try config.nodes.map { n in
            try StormNode(config: config, node: n.name, mode: mode, trace: trace,
                          onRanking: { r in sink.entries.withLock { $0.append(r) } })
        }
    }

    public func start() { nodes.forEach { $0.start() } }

    /// Waits until every node is finished or `seconds` pass; returns whether all did.
    public func waitUntilFinished(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        for n in nodes where !n.waitUntilFinished(seconds: max(0, deadline.timeIntervalSinceNow)) { return false }
        return true
    }

    public func stop() { nodes.forEach { $0.stop() } }

    public func reports() -> [NodeReport] { nodes.map { $0.report() } }

    /// Every ranking the total ranker made, in order.
    public var allRankings: [Ranking] { rankings.entries.withLock { $0 } }
    public var finalRanking: Ranking? { allRankings.last { $0.isFinal } }
}

/// Rankings collected from the total ranker's thread.
final class RankingLog: Sendable {
    let entries = Mutex<[Ranking]>([])
}
