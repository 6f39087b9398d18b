import ArgumentParser
import FlexStorm
import Foundation

/// FlexStorm's two node designs side by side (thesis 6.2.3, tables 6.2/6.4): the same
/// topology, placement and trace in demux and steered mode, A B A B.
struct StormBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storm",
        abstract: "Run a FlexStorm cluster in demux and in steered mode, A B A B, and print throughput and latency ratios.",
        discussion: """
            Every node of the config runs in this process on loopback (each on its own port, \
            kernel sockets). Two phases: throughput, with spouts as fast as flow control lets \
            them (spout tuples per second from start to the final ranking); then latency at one \
            offered load for both modes (--rate per spout, default half of what demux reached), \
            split into input queue, processing, output queue and network per tuple. Every run \
            must end with the trace's exact top n; a run that does not is reported and counts \
            as failed.
            """)

    @Option(help: "The cluster's TOML config (its addresses are remapped onto 127.0.0.1).")
    var config = "Configs/storm-3node-balanced.toml"
    @Option(help: "Trace file (default: generate --tuples names).") var trace: String?
    @Option(help: "Tuples to generate when no --trace is given.") var tuples = 200_000
    @Option(help: "Users in the generated trace.") var users = 10_000
    @Option(help: "Rounds per mode and phase (A B A B ...).") var rounds = 2
    @Option(help: "Offered load for the latency phase, tuples/s per spout (0: half of demux's throughput).") var rate = 0.0
    @Option(help: "First UDP port of the loopback nodes.") var basePort: UInt16 = 27_100
    @Option(help: "Give up on a run after this many seconds.") var timeout = 120.0

    struct Run {
        var mode: StormNode.Mode
        var seconds: Double
        var tuplesPerSecond: Double
        var latency: NodeReport.Latency
        var exact: Bool
        var drops: UInt64
    }

    func run() throws {
        let base = try StormConfig.load(path: config).onLoopback(basePort: basePort)
        let names = try trace.map { try UserTrace.load(path: $0) }
            ?? UserTrace.generate(users: users, tuples: tuples, exponent: 1.0, seed: 1)
        let exact = UserTrace.exactTopN(names, n: base.topN)
        let spouts = base.workers(.spout).count
        print("flexbench storm: \(config), \(base.nodes.count) nodes, \(base.workers.count) workers, \(names.count) tuples, \(rounds) rounds per mode")

        func measure(_ mode: StormNode.Mode, rate: Double) throws -> Run {
            var c = base
            c.spoutRate = rate
            let cluster = try LocalCluster(config: c, mode: mode, trace: names)
            cluster.start()
            let finished = cluster.waitUntilFinished(seconds: timeout)
            cluster.stop()
            let reports = cluster.reports()
            let seconds = reports.map(\.seconds).max() ?? 0
            let drops = reports.reduce(0) { $0 + $1.drops.reduce(0) { $0 + $1.1 } }
            let ok = finished && cluster.finalRanking?.entries == exact
            if !ok { print("  \(mode): did not end with the exact top \(base.topN) (finished: \(finished), drops: \(drops))") }
            return Run(mode: mode, seconds: seconds, tuplesPerSecond: Double(names.count) / max(seconds, 1e-9),
                       latency: .weighted(reports), exact: ok, drops: drops)
        }

        func table(_ runs: [Run]) {
            print("  mode      tuples/s   seconds   input      processing  output     network    total      exact  drops")
            for r in runs {
                let l = r.latency
                print(String(format: "  %-8@ %9.0f   %7.2f   %-10@ %-11@ %-10@ %-10@ %-10@ %-6@ %llu", r.mode.rawValue, r.tuplesPerSecond, r.seconds,
                             NodeReport.format(l.input), NodeReport.format(l.processing), NodeReport.format(l.output),
                             NodeReport.format(l.network), NodeReport.format(l.total), r.exact ? "yes" : "NO", r.drops))
            }
        }

        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        func mean(_ runs: [Run], _ mode: StormNode.Mode, _ f: (Run) -> Double) -> Double {
            let v = runs.filter { $0.mode == mode }.map(f)
            return v.reduce(0, +) / Double(max(v.count, 1))
        }

        print("\nthroughput (spouts unpaced):")
        var peak: [Run] = []
        for _ in 0..<rounds { for m in [StormNode.Mode.demux, .steered] { peak.append(try measure(m, rate: 0)) } }
        table(peak)
        let demuxPeak = median(peak.filter { $0.mode == .demux }.map(\.tuplesPerSecond))
        let steeredPeak = median(peak.filter { $0.mode == .steered }.map(\.tuplesPerSecond))
        print(String(format: "  steered / demux throughput (medians): %.2fx", steeredPeak / demuxPeak))

        let offered = rate > 0 ? rate : demuxPeak / 2 / Double(spouts)
        print(String(format: "\nlatency at %.0f tuples/s per spout (%.0f tuples/s offered):", offered, offered * Double(spouts)))
        var paced: [Run] = []
        for _ in 0..<rounds { for m in [StormNode.Mode.demux, .steered] { paced.append(try measure(m, rate: offered)) } }
        table(paced)
        let demuxTotal = mean(paced, .demux) { $0.latency.total }, steeredTotal = mean(paced, .steered) { $0.latency.total }
        print(String(format: "  mean total latency: demux %@, steered %@: steered / demux %.3f",
                     NodeReport.format(demuxTotal), NodeReport.format(steeredTotal), steeredTotal / demuxTotal))
        print(String(format: "  processing per tuple: demux %@, steered %@",
                     NodeReport.format(mean(paced, .demux) { $0.latency.processing }),
                     NodeReport.format(mean(paced, .steered) { $0.latency.processing })))
        if (peak + paced).contains(where: { !$0.exact }) { throw ExitCode(1) }
    }
}
