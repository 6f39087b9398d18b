import FlexTestSupport
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `flexbench compare --link veth`: memcached and flexkvs behind a veth pair whose ends
/// receive in pinned NAPI threads (root, memcached installed).
@Suite(.serialized, .tags(.integration), .enabled(if: canMakeNamespaces && kernelIsAtLeast(5, 18))) struct CompareIntegrationTests {
    /// Both servers serve every request behind the pair; the server end's receive
    /// threads are counted (server+receive CPU above the server's own, for both); with
    /// --xdp-offload the program on the server end answers GETs; the namespace is gone
    /// afterwards.
    @Test func comparesBehindAVethPairCountingTheReceiveThreads() throws {
        let bench = try builtExecutable("flexbench"), flexkvs = try builtExecutable("flexkvs")
        let (rc, out) = try runProcess(bench, [
            "compare", "--link", "veth", "--xdp-offload", "--flexkvs", flexkvs, "--threads", "1", "--server-cpu", "1",
            "--client-cpu", "0", "--formats", "udp-ascii,tcp-binary", "--rounds", "1", "--duration", "1", "--warmup", "0.3",
            "--keys", "2000", "--memory", "64",
        ], timeout: 120)
        #expect(rc == 0, "\(out)")
        let rounds = out.split(separator: "\n").filter { $0.contains(" round 1: ") }
        #expect(rounds.count == 4, "\(out)")
        for line in rounds {
            #expect(line.contains("misses 0, UDP timeouts 0"), "\(line)")
        }
        let lines = out.split(separator: "\n").map(String.init)
        for format in ["udp-ascii", "tcp-binary"] {
            // "RESULT F ...: server CPU per request memcached 4.33 us, flexkvs 2.51 us, ..."
            let figures = { (what: String) -> [Double] in
                guard let line = lines.first(where: { $0.hasPrefix("RESULT \(format) ") && $0.contains(": \(what) CPU per request") })
                else { return [] }
                return ["memcached", "flexkvs"].compactMap { Self.number(after: " \($0) ", in: line) }
            }
            let server = figures("server"), withReceive = figures("server+receive")
            #expect(server.count == 2 && withReceive.count == 2, "\(out)")
            for (own, both) in zip(server, withReceive) { #expect(own > 0 && both > own, "\(format): \(out)") }
        }
        let offload = lines.first { $0.contains("flexkvs reply offload:") } ?? ""
        #expect((Self.number(after: "xdp_hits ", in: offload) ?? 0) > 0, "\(out)")
        let (_, namespaces) = try runProcess("/usr/sbin/ip", ["netns", "list"])
        #expect(!namespaces.contains("flexbench-compare"), "\(namespaces)")
    }

    /// The number that follows the first `label` in `line`.
    static func number(after label: String, in line: String) -> Double? {
        guard let r = line.range(of: label) else { return nil }
        return Double(line[r.upperBound...].prefix { $0.isNumber || $0 == "." })
    }
}
