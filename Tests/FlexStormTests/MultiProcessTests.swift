import FlexTestSupport
import Foundation
import Testing
@testable import FlexStorm

#if canImport(Glibc)
import Glibc
#endif

/// One `flexstorm node` process per node, as operators run them: a 3-node cluster in
/// three network namespaces on a bridge (DCCP in UDP over kernel sockets), and a
/// 2-node cluster over DPDK net_memif (DCCP in IPv4, kernel bypass). The total
/// ranker's final ranking must be the trace's exact top n.
@Suite(.serialized, .tags(.integration)) struct MultiProcessIntegrationTests {
    static let tag = "fst\(getpid() % 100_000)"
    static let trace = "Traces/storm-users-small.txt"

    /// The final ranking in a node's --json file.
    static func finalRanking(_ path: String) throws -> [RankEntry] {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let line = try #require(text.split(separator: "\n").first { $0.contains("\"final\":true") }, "no final ranking in \(path)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        let top = try #require(object["top"] as? [[String: Any]])
        return try top.map { RankEntry(user: try #require(UserName($0["user"] as? String ?? "")), count: UInt64($0["count"] as? Int ?? -1)) }
    }

    /// Makes (up) or removes (down) the three namespaces of `Scripts/storm-netns.sh`
    /// under `prefix`; throws with the script's output if it fails.
    static func netns(_ verb: String, prefix: String) throws {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["Scripts/storm-netns.sh", verb]
        p.environment = ["FLEXSTORM_NETNS_PREFIX": prefix, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        try p.run()
        p.waitUntilExit()
        let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        if p.terminationStatus != 0 { throw TestSetupError("storm-netns.sh \(verb): \(out)") }
    }

    static func expectExact(_ json: String, nodes: [ChildProcess]) throws {
        let exact = UserTrace.exactTopN(try UserTrace.load(path: trace), n: 10)
        #expect(try finalRanking(json) == exact, "\(nodes.map(\.output))")
        for n in nodes { #expect(n.output.contains("destination_down 0, lost_in_flight 0, unknown_destination 0, output_overflow 0, unknown_target 0")) }
    }

    @Test(.enabled(if: canMakeNamespaces), arguments: StormNode.Mode.allCases)
    func threeNodesInNamespaces(mode: StormNode.Mode) throws {
        let prefix = "\(Self.tag)\(mode == .demux ? "d" : "s")"
        try Self.netns("up", prefix: prefix)
        defer { try? Self.netns("down", prefix: prefix) }
        let flexstorm = try builtExecutable("flexstorm")
        let json = "/tmp/\(prefix)-a.json"
        defer { unlink(json) }
        let nodes = try ["a", "b", "c"].map { n in
            try ChildProcess("/usr/sbin/ip", ["netns", "exec", "\(prefix)-\(n)", flexstorm, "node", "--config",
                                              "Configs/storm-3node-balanced.toml", "--node", n, "--trace", Self.trace,
                                              "--mode", mode.rawValue, "--duration", "90"] + (n == "a" ? ["--json", json] : []))
        }
        for n in nodes { #expect(n.waitForExit(timeout: 120) == 0, "\(n.output)") }
        try Self.expectExact(json, nodes: nodes)
    }

    /// A node killed with SIGKILL and started again rejoins its cluster: the peers find
    /// it down, start their connections over in a new epoch, and send to the new
    /// process from its first second; the new process's own connections start over at
    /// the peers (`reconnected`); what was lost is counted.
    @Test(.enabled(if: canMakeNamespaces), arguments: StormNode.Mode.allCases)
    func aKilledNodeRejoinsWhenStartedAgain(mode: StormNode.Mode) throws {
        let prefix = "\(Self.tag)r\(mode == .demux ? "d" : "s")"
        try Self.netns("up", prefix: prefix)
        defer { try? Self.netns("down", prefix: prefix) }
        // Spouts on a and c feed the counter on b, which feeds the rankers on a: b both
        // receives from and sends to its peers. Paced, so the run outlasts the restart.
        let config = "/tmp/\(prefix)-restart.toml"
        defer { unlink(config) }
        try """
            [topology]
            emit_interval_ms = 200
            peer_down_ms = 400
            spout_rate = 2000
            \((1...3).map { "[[node]]\nname = \"\(["a", "b", "c"][$0 - 1])\"\naddress = \"198.18.1.\($0)\"\nport = 7100" }.joined(separator: "\n"))
            [[worker]]
            kind = "spout"
            node = "a"
            [[worker]]
            kind = "spout"
            node = "c"
            [[worker]]
            kind = "counter"
            node = "b"
            [[worker]]
            kind = "ranker"
            node = "a"
            [[worker]]
            kind = "total"
            node = "a"
            """.write(toFile: config, atomically: true, encoding: .utf8)
        let flexstorm = try builtExecutable("flexstorm")
        func node(_ n: String, seconds: Int) throws -> ChildProcess {
            try ChildProcess("/usr/sbin/ip", ["netns", "exec", "\(prefix)-\(n)", flexstorm, "node", "--config", config, "--node", n,
                                              "--generate", "40000", "--users", "500", "--mode", mode.rawValue, "--duration", "\(seconds)"])
        }
        let a = try node("a", seconds: 14), first = try node("b", seconds: 14), c = try node("c", seconds: 14)
        #expect(first.waitForOutput("node b: ", timeout: 10), "b runs: \(first.output)")
        Thread.sleep(forTimeInterval: 1.5)
        kill(first.process.processIdentifier, SIGKILL)
        #expect([SIGKILL, 128 + SIGKILL].contains(first.waitForExit(timeout: 5)), "b ends by SIGKILL")
        Thread.sleep(forTimeInterval: 1.5)  // the peers find b down (peer_down_ms) and start over
        let second = try node("b", seconds: 8)
        for n in [a, c, second] { #expect(n.waitForExit(timeout: 40) == 0, "\(n.output)") }

        func number(_ pattern: String, in text: String) -> Int? {
            guard let r = text.range(of: pattern, options: .regularExpression) else { return nil }
            return Int(text[r].filter(\.isNumber))
        }
        // From its first second the new b processes what its peers send.
        #expect((number("node b: [0-9]+ tuples/s", in: second.output) ?? 0) > 0, "\(second.output)")
        for peer in [a, c] {
            #expect((number("peer down [0-9]+x", in: peer.output) ?? 0) >= 1, "\(peer.output)")
            let lost = (number("destination_down [0-9]+", in: peer.output) ?? 0) + (number("lost_in_flight [0-9]+", in: peer.output) ?? 0)
            #expect(lost > 0, "what b missed is counted: \(peer.output)")
        }
        // The new b's connection to a's rankers started over there.
        #expect((number("reconnected [0-9]+", in: a.output) ?? 0) >= 1, "\(a.output)")
        if ProcessInfo.processInfo.environment["STORM_RESTART_VERBOSE"] != nil { print(a.output, c.output, second.output) }
    }

    @Test(arguments: StormNode.Mode.allCases)
    func twoNodesOverDPDKMemif(mode: StormNode.Mode) throws {
        let config = "Configs/storm-2node.toml", socket = "/tmp/\(Self.tag)-storm.sock", json = "/tmp/\(Self.tag)-memif.json"
        defer { for path in [socket, json] { unlink(path) } }
        let flexstorm = try builtExecutable("flexstorm")
        func node(_ name: String, role: String) throws -> ChildProcess {
            let eal = "--no-huge --no-pci -m 256 --file-prefix=\(Self.tag)\(name)\(mode.rawValue) --log-level=3 "
                + "--vdev=net_memif0,role=\(role),socket=\(socket),socket-abstract=no"
            return try ChildProcess(flexstorm, ["node", "--config", config, "--node", name, "--trace", Self.trace,
                                                "--mode", mode.rawValue, "--io", "dpdk", "--eal", eal, "--duration", "90"]
                                    + (name == "a" ? ["--json", json] : []))
        }
        let a = try node("a", role: "server")
        // The client cannot start before the server's socket exists.
        let deadline = Date().addingTimeInterval(20)
        while !FileManager.default.fileExists(atPath: socket) && a.process.isRunning && Date() < deadline { usleep(10_000) }
        let b = try node("b", role: "client")
        for n in [a, b] { #expect(n.waitForExit(timeout: 120) == 0, "\(n.output)") }
        try Self.expectExact(json, nodes: [a, b])
    }
}
