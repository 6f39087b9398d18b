import ArgumentParser
import FlexCLI
import FlexIO
import FlexStorm
import Foundation

/// FlexStorm's two node designs side by side (thesis 6.2.3, tables 6.2/6.4): the same
/// topology, placement and trace in demux and steered mode, A B A B.
struct StormBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "storm",
        abstract: "Run a FlexStorm cluster in demux and in steered mode, A B A B, and print throughput and latency ratios.",
        discussion: """
            --io socket (default): every node of the config runs in this process on loopback, \
            each on its own port (DCCP in UDP on kernel sockets). --io dpdk: a 2-node config \
            runs as two `flexstorm node` processes joined by DPDK net_memif (DCCP in IPv4, \
            kernel bypass). Two phases: throughput, with spouts as fast as flow control lets \
            them (spout tuples per second over the cluster's active span, first tuple taken to \
            last); then latency at one offered load for both modes (--rate per spout, default \
            half of what demux reached), split into input queue, processing, output queue and \
            network per tuple. Every run must end with the trace's exact top n; a run that \
            does not is reported and counts as failed.
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
    @Option(help: "socket (in-process, kernel UDP) or dpdk (two processes on a DPDK net_memif pair).") var io: PacketIO = .socket
    @Option(help: "flexstorm binary for --io dpdk (default: beside this flexbench).") var flexstorm: String?

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

        if io == .dpdk {
            guard base.nodes.count == 2 else { throw ValidationError("--io dpdk runs a 2-node config (memif is point to point)") }
            let path = flexstorm ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("flexstorm").path
            guard FileManager.default.isExecutableFile(atPath: path) else { throw ValidationError("\(path) not found (swift build -c release)") }
        }
        let traceFile = "/tmp/flexbench-storm-\(getpid()).txt"
        if io == .dpdk { try UserTrace.write(names, to: traceFile) }
        defer { unlink(traceFile) }

        func measure(_ mode: StormNode.Mode, rate: Double) throws -> Run {
            if io == .dpdk { return try measureOverMemif(mode, rate: rate, traceFile: traceFile, exact: exact, count: names.count) }
            var c = base
            c.spoutRate = rate
            let cluster = try LocalCluster(config: c, mode: mode, trace: names)
            cluster.start()
            let finished = cluster.waitUntilFinished(seconds: timeout)
            cluster.stop()
            let reports = cluster.reports()
            let seconds = Self.activeSpan(reports.flatMap(\.workers))
            let drops = reports.reduce(0) { $0 + $1.drops.reduce(0) { $0 + $1.1 } }
            let ok = finished && cluster.finalRanking?.entries == exact
            if !ok { print("  \(mode): did not end with the exact top \(base.topN) (finished: \(finished), drops: \(drops))") }
            return Run(mode: mode, seconds: seconds, tuplesPerSecond: Double(names.count) / max(seconds, 1e-9),
                       latency: .weighted(reports), exact: ok, drops: drops)
        }

        func table(_ runs: [Run]) {
            func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s + " " : s + String(repeating: " ", count: n - s.count) }
            print("  " + ["mode", "tuples/s", "seconds", "input", "processing", "output", "network", "total", "exact", "drops"]
                .enumerated().map { pad($0.1, [9, 10, 9, 11, 11, 11, 11, 11, 6, 6][$0.0]) }.joined())
            for r in runs {
                let l = r.latency
                let cells = [r.mode.rawValue, String(format: "%.0f", r.tuplesPerSecond), String(format: "%.2f", r.seconds),
                             NodeReport.format(l.input), NodeReport.format(l.processing), NodeReport.format(l.output),
                             NodeReport.format(l.network), NodeReport.format(l.total), r.exact ? "yes" : "NO", "\(r.drops)"]
                print("  " + cells.enumerated().map { pad($0.1, [9, 10, 9, 11, 11, 11, 11, 11, 6, 6][$0.0]) }.joined())
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

    /// Seconds from the first tuple any worker took to the last one.
    static func activeSpan(_ workers: [WorkerStats.Snapshot]) -> Double {
        let w = workers.filter { $0.processed > 0 }
        guard let first = w.map(\.firstTupleAt).min(), let last = w.map(\.lastTupleAt).max(), last > first else { return 0 }
        return Double(last - first) / 1e9
    }

    /// One run as two `flexstorm node` processes on a memif link (node 0 the server).
    func measureOverMemif(_ mode: StormNode.Mode, rate: Double, traceFile: String, exact: [RankEntry], count: Int) throws -> Run {
        let binary = flexstorm ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("flexstorm").path
        let tag = "fb\(getpid())"
        let socket = "/tmp/\(tag)-memif.sock"
        let base = try StormConfig.load(path: config)
        var processes: [(name: String, process: Process, json: String, log: String)] = []
        var keepLogs = false
        defer {
            for p in processes where p.process.isRunning { p.process.terminate() }
            for p in processes {
                unlink(p.json)
                if !keepLogs { unlink(p.log) }
            }
            unlink(socket)
        }
        for (i, node) in base.nodes.enumerated() {
            let json = "/tmp/\(tag)-\(node.name).json"
            let eal = "--no-huge --no-pci -m 256 --file-prefix=\(tag)\(node.name) --log-level=3 "
                + "--vdev=net_memif0,role=\(i == 0 ? "server" : "client"),socket=\(socket),socket-abstract=no"
            let p = Process()
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = ["node", "--config", config, "--node", node.name, "--trace", traceFile, "--mode", mode.rawValue,
                           "--spout-rate", String(rate), "--io", "dpdk", "--eal", eal, "--json", json,
                           "--duration", String(timeout)]
            let log = "/tmp/\(tag)-\(node.name)-\(mode.rawValue)-\(monotonicNanoseconds()).log"
            guard FileManager.default.createFile(atPath: log, contents: nil), let out = FileHandle(forWritingAtPath: log) else {
                throw ValidationError("cannot write \(log)")
            }
            p.standardOutput = out
            p.standardError = out
            try p.run()
            processes.append((node.name, p, json, log))
            if i == 0 {
                // The client cannot start before the server's socket exists.
                let deadline = Date().addingTimeInterval(10)
                while !FileManager.default.fileExists(atPath: socket) && p.isRunning && Date() < deadline { usleep(10_000) }
            }
        }
        for p in processes { p.process.waitUntilExit() }
        var reports: [[String: Any]] = []
        var final: [RankEntry]?
        for p in processes {
            let lines = (try? String(contentsOfFile: p.json, encoding: .utf8))?.split(separator: "\n") ?? []
            if let last = lines.last, let r = try? JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any], r["node"] != nil {
                reports.append(r)
            }
            if let f = lines.last(where: { $0.contains("\"final\":true") }),
               let o = try? JSONSerialization.jsonObject(with: Data(f.utf8)) as? [String: Any], let top = o["top"] as? [[String: Any]] {
                final = top.compactMap { e in UserName(e["user"] as? String ?? "").map { RankEntry(user: $0, count: UInt64(e["count"] as? Int ?? 0)) } }
            }
        }
        func number(_ r: [String: Any], _ path: String...) -> Double {
            var v: Any? = r
            for k in path { v = (v as? [String: Any])?[k] }
            return (v as? NSNumber)?.doubleValue ?? 0
        }
        let processed = reports.map { number($0, "processed") }
        let total = max(processed.reduce(0, +), 1)
        func weighted(_ k: String) -> Double { zip(reports, processed).reduce(0) { $0 + number($1.0, "latency_ns", k) * $1.1 } / total }
        let first = reports.map { number($0, "first_tuple_ns") }.filter { $0 > 0 }.min() ?? 0
        let last = reports.map { number($0, "last_tuple_ns") }.max() ?? 0
        let seconds = max(last - first, 0) / 1e9
        let drops = UInt64(reports.reduce(0) { r, o in r + ((o["drops"] as? [String: Any])?.values.reduce(0) { $0 + ((($1 as? NSNumber)?.doubleValue) ?? 0) } ?? 0) })
        let ok = reports.count == processes.count && final == exact
        if !ok {
            keepLogs = true
            let status = processes.map { "\($0.name) exited \($0.process.terminationStatus) (log \($0.log))" }.joined(separator: ", ")
            print("  \(mode): did not end with the exact top \(exact.count) (reports \(reports.count), drops \(drops)); \(status)")
        }
        return Run(mode: mode, seconds: seconds, tuplesPerSecond: Double(count) / max(seconds, 1e-9),
                   latency: .init(input: weighted("input"), processing: weighted("processing"), output: weighted("output"),
                                  network: weighted("network")),
                   exact: ok, drops: drops)
    }
}
