import FlexIO
import FlexNIC
import FlexTestSupport
import FlexWire
import Foundation
import Testing
@testable import FlexStorm

#if canImport(Glibc)
import Glibc
#endif

/// Whole clusters in one process on loopback, each node on its own kernel UDP port:
/// the final ranking must be the exact top n of the trace, in both node designs.
@Suite(.serialized, .tags(.integration)) struct ClusterIntegrationTests {
    /// Ports far from the ephemeral range, different for each test.
    static func basePort(_ k: Int) -> UInt16 { UInt16(20_000 + (Int(getpid()) % 500) * 20 + k * 3) }

    static func config(_ name: String, port: UInt16, edit: (inout StormConfig) -> Void = { _ in }) throws -> StormConfig {
        var c = try StormConfig.load(path: "Configs/\(name).toml").onLoopback(basePort: port)
        c.emitIntervalMilliseconds = 200
        edit(&c)
        return c
    }

    /// Runs the cluster to the end; returns its final ranking and the node reports.
    static func run(_ config: StormConfig, _ mode: StormNode.Mode, trace: [UserName], timeout: Double = 60) throws
        -> (Ranking, [NodeReport]) {
        let cluster = try LocalCluster(config: config, mode: mode, trace: trace)
        cluster.start()
        let finished = cluster.waitUntilFinished(seconds: timeout)
        cluster.stop()
        let reports = cluster.reports()
        #expect(finished, "\(mode) did not finish: \(reports.map(\.text))")
        return (try #require(cluster.finalRanking), reports)
    }

    static func expectNoDrops(_ reports: [NodeReport]) {
        for r in reports {
            for (reason, n) in r.drops { #expect(n == 0, "\(r.node) dropped \(n) (\(reason))") }
        }
    }

    @Test(arguments: StormNode.Mode.allCases)
    func oneNodeEndsWithTheExactTopN(mode: StormNode.Mode) throws {
        let trace = try UserTrace.load(path: "Traces/storm-users-small.txt")
        let (ranking, reports) = try Self.run(try Self.config("storm-1node", port: Self.basePort(mode == .demux ? 0 : 1)), mode,
                                              trace: trace)
        #expect(ranking.entries == UserTrace.exactTopN(trace, n: 10))
        Self.expectNoDrops(reports)
        // Every spout tuple reached a counter exactly once.
        let counted = reports[0].workers.filter { $0.role == .counter }.reduce(0) { $0 + $1.processed }
        let endMarkers = UInt64(2 * 2)  // 2 spouts x 2 counters
        #expect(counted == UInt64(trace.count) + endMarkers)
    }

    @Test(arguments: [("storm-3node-balanced", StormNode.Mode.demux), ("storm-3node-balanced", .steered),
                      ("storm-3node-grouped", .demux), ("storm-3node-grouped", .steered)])
    func threeNodesEndWithTheExactTopN(config name: String, mode: StormNode.Mode) throws {
        let trace = UserTrace.generate(users: 3_000, tuples: 30_000, exponent: 1.1, seed: 3)
        let k = (name.hasSuffix("grouped") ? 2 : 0) + (mode == .demux ? 0 : 1)
        let (ranking, reports) = try Self.run(try Self.config(name, port: Self.basePort(2 + k)), mode, trace: trace)
        #expect(ranking.entries == UserTrace.exactTopN(trace, n: 10))
        Self.expectNoDrops(reports)
        #expect(reports.count == 3 && reports.allSatisfy { $0.processed > 0 })
    }

    /// Queues of two slots and windows of four: the receivers withhold acks all the
    /// time, senders stall, and still nothing is lost or duplicated.
    @Test(arguments: StormNode.Mode.allCases)
    func fullQueuesStallSendersWithoutLoss(mode: StormNode.Mode) throws {
        let trace = UserTrace.generate(users: 500, tuples: 8_000, exponent: 1.0, seed: 5)
        let config = try Self.config("storm-3node-grouped", port: Self.basePort(6 + (mode == .demux ? 0 : 1))) {
            $0.queueDepth = 2
            $0.sendWindow = 4
        }
        let (ranking, reports) = try Self.run(config, mode, trace: trace)
        #expect(ranking.entries == UserTrace.exactTopN(trace, n: 10))
        Self.expectNoDrops(reports)
        let withheld = reports.reduce(0) { $0 + ($1.receive.first { $0.name == "withheld_queue_full" }?.value ?? 0) }
        #expect(withheld > 0, "no ack was ever withheld: the test did not fill a queue")
        let duplicatesDelivered = reports.reduce(0) { $0 + $1.processed } - reports.reduce(0) {
            $0 + ($1.receive.first { $0.name == "delivered" }?.value ?? 0)
        }
        #expect(duplicatesDelivered == 0)  // workers took exactly what the pipeline placed
    }

    /// Node b never starts: tuples for its counter are dropped and counted once it is
    /// found down, and node a keeps working (its total ranker keeps reporting).
    @Test(arguments: StormNode.Mode.allCases)
    func aDownNodeCostsCountedDropsOnly(mode: StormNode.Mode) throws {
        let text = """
            [topology]
            emit_interval_ms = 100
            peer_down_ms = 300
            spout_rate = 4000
            [[node]]
            name = "a"
            address = "127.0.0.1"
            port = \(Self.basePort(8 + (mode == .demux ? 0 : 1)))
            [[node]]
            name = "b"
            address = "127.0.0.1"
            port = \(Self.basePort(8 + (mode == .demux ? 0 : 1)) + 1)
            [[worker]]
            kind = "spout"
            node = "a"
            [[worker]]
            kind = "counter"
            node = "a"
            [[worker]]
            kind = "counter"
            node = "b"
            [[worker]]
            kind = "ranker"
            node = "a"
            [[worker]]
            kind = "total"
            node = "a"
            """
        let config = try StormConfig.parse(text)
        let trace = UserTrace.generate(users: 200, tuples: 8_000, exponent: 1.0, seed: 9)
        let log = RankingLog()
        let node = try StormNode(config: config, node: "a", mode: mode, trace: trace) { r in log.entries.withLock { $0.append(r) } }
        node.start()
        Thread.sleep(forTimeInterval: 1.5)
        let before = log.entries.withLock { $0.count }
        Thread.sleep(forTimeInterval: 0.5)
        let after = log.entries.withLock { $0.count }
        node.stop()
        let r = node.report()
        #expect(r.senders.refusedWhileDown > 0 && r.senders.timesDown >= 1, "\(r.text)")
        #expect(after > before, "the total ranker stopped reporting")
        // Node a's own counter still counted its users.
        #expect((r.workers.first { $0.role == .counter }?.processed ?? 0) > 1_000, "\(r.text)")
        #expect(!node.isFinished)  // it waits for b's counter's end of stream, as it should
    }

    /// Garbage sent at a running node's port is counted and does not disturb the run.
    @Test func corruptPacketsAreCountedAndTheRunStillEndsRight() throws {
        let port = Self.basePort(10)
        let config = try Self.config("storm-1node", port: port) { $0.spoutRate = 4_000 }
        let trace = UserTrace.generate(users: 300, tuples: 6_000, exponent: 1.0, seed: 11)
        let cluster = try LocalCluster(config: config, mode: .steered, trace: trace)
        cluster.start()

        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(fd) }
        var to = sockaddr_in()
        to.sin_family = sa_family_t(AF_INET)
        to.sin_port = port.bigEndian
        to.sin_addr.s_addr = IPv4Address.loopback.value.bigEndian
        func send(_ bytes: [UInt8]) {
            _ = bytes.withUnsafeBytes { b in
                withUnsafePointer(to: &to) {
                    $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(fd, b.baseAddress, b.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
                }
            }
        }
        // A valid DCCP-UDP datagram for worker 999 (no such worker), from another port.
        let e = FrameBuilder.Endpoints(source: .loopback, destination: .loopback, sourcePort: 1, destinationPort: port)
        var payload = [UInt8](repeating: 0, count: Tuple.wireLength)
        payload.withUnsafeMutableBytes { Tuple(destination: 999, source: 1, kind: .user, user: UserName("ghost")!).encode(to: $0.baseAddress!) }
        let frame = Frames.build { b in
            payload.withUnsafeBytes {
                try! FrameBuilder.dccpData(into: b, endpoints: e, udpEncapsulated: true, dccpPorts: (40_000, port),
                                           sequence: 1, payload: $0.baseAddress!, count: $0.count)
            }
        }
        let datagram = Array(frame[42...])
        var badSum = datagram
        badSum[30] ^= 0xFF
        for _ in 0..<20 {
            send(datagram)                 // unknown worker: acked, dropped, counted
            send(badSum)                   // bad checksum
            send(Array(datagram.prefix(7)))  // shorter than a DCCP header
            send([UInt8](repeating: 0xA5, count: 200))  // noise
            usleep(10_000)
        }
        let finished = cluster.waitUntilFinished(seconds: 60)
        cluster.stop()
        let r = cluster.reports()[0]
        #expect(finished, "\(r.text)")
        #expect(cluster.finalRanking?.entries == UserTrace.exactTopN(trace, n: 10))
        let counts = Dictionary(uniqueKeysWithValues: r.receive.map { ($0.name, $0.value) })
        #expect(counts["unknown_target"]! >= 1 && counts["bad_checksum"]! >= 20 && counts["malformed"]! >= 40, "\(r.text)")
    }
}
