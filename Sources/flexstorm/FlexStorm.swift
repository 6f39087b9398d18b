import ArgumentParser
import FlexCLI
import FlexIO
import FlexStorm
import Foundation
import Synchronization

@main
struct FlexStormCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flexstorm",
        abstract: "FlexStorm: a stream-analytics node (top-n users) with DCCP flow control and tuple steering.",
        discussion: """
            A cluster is one TOML file (Configs/storm-*.toml): the topology's parameters, the nodes' \
            addresses and which node runs each worker. Run `flexstorm node` once per node (each in its \
            own network namespace, or with its own address), or `flexstorm run` for every node in one \
            process. --mode demux uses demultiplexer and multiplexer threads; --mode steered lets the \
            steering pipeline place each tuple into its worker's queue and ack it, and workers send \
            directly.
            """,
        subcommands: [Node.self, Run.self, Generate.self, TopN.self]
    )
}

struct TraceOptions: ParsableArguments {
    @Option(help: "The spouts' input: one user name per line (Traces/storm-users-small.txt).") var trace: String?
    @Option(help: "Instead of --trace, generate this many tuples (Zipf user activity).") var generate: Int?
    @Option(help: "With --generate: distinct users.") var users = 10_000
    @Option(help: "With --generate: Zipf exponent of user activity.") var exponent = 1.0
    @Option(help: "With --generate: random seed.") var seed: UInt64 = 1

    func load() throws -> [UserName] {
        switch (trace, generate) {
        case (let path?, nil): return try UserTrace.load(path: path)
        case (nil, let n?):
            guard n >= 0, users >= 1, exponent >= 0 else { throw ValidationError("--generate, --users and --exponent must be positive") }
            return UserTrace.generate(users: users, tuples: n, exponent: exponent, seed: seed)
        case (nil, nil): throw ValidationError("give the spouts an input: --trace FILE or --generate N")
        default: throw ValidationError("--trace and --generate exclude each other")
        }
    }
}

struct Node: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run one node of a cluster until its workers are done (finite trace), --duration passes, or SIGINT.",
        discussion: """
            Rankings (on the node that runs the total ranker) go to standard output every emit interval; \
            a status line per second and the node's report go to standard error. --json FILE also writes \
            each ranking and the final report as JSON lines.
            """
    )
    @Option(help: "The cluster's TOML config.") var config: String
    @Option(help: "This node's name in the config.") var node: String
    @Option(help: "demux (mux/demux threads) or steered (pipeline places tuples).") var mode: StormNode.Mode = .steered
    @OptionGroup var input: TraceOptions
    @Option(help: "Stop after this many seconds (0: when done).") var duration = 0.0
    @Option(help: "Tuples/s per spout, instead of the config's spout_rate (0: unpaced).") var spoutRate: Double?
    @Option(help: "socket (DCCP in UDP on kernel sockets) or dpdk (DCCP in IPv4 on a DPDK port).") var io: PacketIO = .socket
    @OptionGroup var dpdk: DPDKOptions
    @Option(help: "Also write rankings and the report as JSON lines to this file (- for stdout).") var json: String?

    func run() throws {
        var cluster = try StormConfig.load(path: config)
        if let spoutRate {
            guard spoutRate >= 0 else { throw ValidationError("--spout-rate must not be negative") }
            cluster.spoutRate = spoutRate
        }
        let trace = try input.load()
        guard cluster.nodeIndex(named: node) != nil else {
            throw RuntimeFailure("no node named \"\(node)\" in \(config) (\(cluster.nodes.map(\.name).joined(separator: ", ")))")
        }
        let transport: StormNode.Transport
        switch io {
        case .socket:
            try dpdk.refuse()
            transport = .kernel
        case .dpdk:
            var c = DPDKPort.Configuration()
            c.rxQueues = StormNode.ethernetQueues(mode: mode, config: cluster)
            c.txQueues = c.rxQueues
            let port = try dpdk.openPort(configuration: c)
            // The node starts once its link is up: peers sent to before it look down
            // (`peer_down_ms`).
            guard port.waitForLink(timeoutMilliseconds: 30_000) else {
                throw RuntimeFailure("\(port.name): the link did not come up within 30 s (is the peer running?)")
            }
            transport = .ethernet(port) { body in DPDKEnvironment.asLcore(body) }
        }
        let jsonFile = try json.map(OutputFile.init)
        let start = monotonicNanoseconds()
        let n = try StormNode(config: cluster, node: node, mode: mode, trace: trace, transport: transport) { ranking in
            print(ranking.text(since: start))
            fflush(stdout)
            jsonFile?.writeLine(ranking.json(since: start))
        }
        Termination.install()
        n.start()
        var lastProcessed: UInt64 = 0
        var nextStatus = Date().addingTimeInterval(1)
        let deadline = duration > 0 ? Date().addingTimeInterval(duration) : .distantFuture
        while !n.isFinished && !Termination.requested && Date() < deadline {
            usleep(10_000)
            if Date() >= nextStatus {
                let r = n.report()
                FileHandle.standardError.write(Data("node \(node): \(r.processed - lastProcessed) tuples/s, \(r.processed) processed\n".utf8))
                lastProcessed = r.processed
                nextStatus = nextStatus.addingTimeInterval(1)
            }
        }
        n.stop()
        let r = n.report()
        FileHandle.standardError.write(Data((r.text + "\n").utf8))
        jsonFile?.writeLine(r.json)
    }
}

struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run every node of a config in this process (the config's addresses must be local, or --loopback).")
    @Option(help: "The cluster's TOML config.") var config: String
    @Flag(help: "Put every node on 127.0.0.1, node i on the first node's port + i (a multi-host config on one machine).")
    var loopback = false
    @Option(help: "demux or steered.") var mode: StormNode.Mode = .steered
    @OptionGroup var input: TraceOptions
    @Option(help: "Give up after this many seconds.") var timeout = 120.0
    @Option(help: "Write rankings and reports as JSON lines to this file (- for stdout, instead of the text).") var json: String?

    func run() throws {
        var cluster = try StormConfig.load(path: config)
        if loopback { cluster = cluster.onLoopback(basePort: cluster.nodes[0].port) }
        let trace = try input.load()
        let jsonFile = try json.map(OutputFile.init)
        let c = try LocalCluster(config: cluster, mode: mode, trace: trace)
        let start = monotonicNanoseconds()
        Termination.install()
        c.start()
        let deadline = Date().addingTimeInterval(timeout)
        var finished = false
        while !Termination.requested && Date() < deadline {
            if c.waitUntilFinished(seconds: 0.05) { finished = true; break }
        }
        c.stop()
        for r in c.allRankings {
            jsonFile?.writeLine(r.json(since: start))
            if jsonFile?.isStandardOutput != true { print(r.text(since: start)) }
        }
        for r in c.reports() {
            jsonFile?.writeLine(r.json)
            if jsonFile?.isStandardOutput != true { print(r.text) }
        }
        if !finished { throw RuntimeFailure("the cluster did not finish within \(timeout) s") }
    }
}

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a trace of user names with Zipf user activity (the same seed gives the same file).")
    @Option(help: "Tuples (lines).") var tuples = 20_000
    @Option(help: "Distinct users.") var users = 2_000
    @Option(help: "Zipf exponent.") var exponent = 1.0
    @Option(help: "Random seed.") var seed: UInt64 = 1
    @Option(name: .output, help: "Output file.") var output: String

    func run() throws {
        guard tuples >= 0, users >= 1, exponent >= 0 else { throw ValidationError("--tuples, --users and --exponent must be positive") }
        try UserTrace.write(UserTrace.generate(users: users, tuples: tuples, exponent: exponent, seed: seed), to: output)
        print("wrote \(tuples) tuples of \(users) users to \(output)")
    }
}

struct TopN: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "topn", abstract: "The exact top n of a trace, computed offline (what a cluster's final ranking must be).")
    @Option(help: "Trace file.") var trace: String
    @Option(name: .customShort("n"), help: "How many users.") var count = 10

    func run() throws {
        for e in UserTrace.exactTopN(try UserTrace.load(path: trace), n: count) { print(e) }
    }
}

extension StormNode.Mode: ExpressibleByArgument {}
