import FlexWire
import Testing
@testable import FlexStorm

@Suite struct StormConfigTests {
    static let valid = """
        [topology]
        top_n = 5
        window_seconds = 30

        [[node]]
        name = "a"
        address = "198.18.1.1"
        port = 7100

        [[node]]
        name = "b"
        address = "198.18.1.2"
        port = 7100

        [[worker]]
        kind = "spout"
        node = "a"
        replicas = 2

        [[worker]]
        kind = "counter"
        node = "b"
        replicas = 2

        [[worker]]
        kind = "ranker"
        node = "a"

        [[worker]]
        kind = "total"
        node = "b"
        """

    @Test func parsesNodesWorkersAndDefaults() throws {
        let c = try StormConfig.parse(Self.valid)
        #expect(c.topN == 5 && c.windowSeconds == 30 && c.windowSlots == 6 && c.sendWindow == 128)
        #expect(c.nodes.map(\.name) == ["a", "b"] && c.nodes[1].address == IPv4Address(198, 18, 1, 2))
        #expect(c.workers.map(\.id) == [1, 2, 3, 4, 5, 6])
        #expect(c.workers.map(\.role) == [.spout, .spout, .counter, .counter, .ranker, .total])
        #expect(c.workers.map(\.node) == [0, 0, 1, 1, 0, 1])
        #expect(c.workers(.counter).map(\.replica) == [0, 1])
        let loop = c.onLoopback(basePort: 9000)
        #expect(loop.nodes.map(\.port) == [9000, 9001] && loop.nodes.allSatisfy { $0.address == .loopback })
    }

    /// Each broken config must fail naming the line where the problem is written.
    @Test(arguments: [
        ("node = \"b\"\nreplicas = 2", "node = \"zz\"\nreplicas = 2", ":22:", "no [[node]] defines"),
        ("address = \"198.18.1.2\"", "address = \"198.18.1\"", ":12:", "not an IPv4 address"),
        ("port = 7100\n\n[[worker]]", "port = 70000\n\n[[worker]]", ":13:", "out of range"),
        ("kind = \"ranker\"", "kind = \"bolt\"", ":26:", "unknown worker kind"),
        ("top_n = 5", "top_n = 0", ":2:", "top_n"),
        ("top_n = 5", "top_n = 5\nsend_window = 100", ":3:", "power of two"),
        ("name = \"b\"", "name = \"a\"", ":11:", "defined twice"),
        ("top_n = 5", "top_n = 5\ncolour = 3", ":3:", "unknown key"),
        ("top_n = 5", "top_n = \"five\"", ":2:", "`topology.top_n` has a value of the wrong type"),
        ("port = 7100\n\n[[worker]]", "port = \"x\"\n\n[[worker]]", ":13:", "`node[2].port` has a value of the wrong type"),
        ("port = 7100\n\n[[worker]]", "\n\n[[worker]]", ":10:", "missing `node[2].port`"),
        ("top_n = 5", "top_n = [", ":3:", "parsing"),  // the parser notices on the next line
        ("kind = \"total\"", "kind = \"ranker\"", "", "exactly one total ranker"),
    ])
    func brokenConfigsNameTheLine(original: String, broken: String, line: String, message: String) throws {
        let text = Self.valid.replacingOccurrences(of: original, with: broken)
        #expect(text != Self.valid)
        do {
            _ = try StormConfig.parse(text, source: "c.toml")
            Issue.record("accepted: \(broken)")
        } catch {
            let s = "\(error)"
            #expect(s.hasPrefix("c.toml"), "\(s)")
            #expect(line.isEmpty || s.contains("c.toml\(line)"), "\(s)")
            #expect(s.contains(message), "\(s)")
        }
    }

    @Test func shippedConfigsLoad() throws {
        for name in ["storm-1node", "storm-3node-balanced", "storm-3node-grouped"] {
            let c = try StormConfig.load(path: "Configs/\(name).toml")
            #expect(c.workers(.total).count == 1)
        }
        let grouped = try StormConfig.load(path: "Configs/storm-3node-grouped.toml")
        #expect(Set(grouped.workers(.counter).map(\.node)).count == 1)  // every counter on one node
        let balanced = try StormConfig.load(path: "Configs/storm-3node-balanced.toml")
        #expect(Set(balanced.workers(.counter).map(\.node)).count == 3)
    }
}

extension StormConfigTests {
    /// From fuzzing: a table name outside ASCII is an error with its line, not a parser trap.
    @Test func aConfigWithATableNameOutsideASCIIIsRefused() {
        do {
            _ = try StormConfig.parse("# ok\n[\u{F5}]\n", source: "c.toml")
            Issue.record("parsed")
        } catch {
            #expect("\(error)".hasPrefix("c.toml:2:"), "\(error)")
        }
    }
}
