import ArgumentParser
import FlexWire
import Foundation

/// `flexbench rebalance`: flexkvs under key steering with and without online
/// rebalancing, side by side, under skewed key popularity.
struct Rebalance: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "flexkvs key steering with and without shard rebalancing, A B A B: per-worker load spread and throughput.",
        discussion: """
            Starts two flexkvs on loopback (--rebalance-interval 1 and 0), preloads the \
            keys, and for every thread count and Zipf exponent runs the same load against \
            each --rounds times alternately. The spread is the busiest worker's share of \
            the requests served during the run (warm-up included) over the mean share \
            (`stats steering`, worker:N:requests): 1.00 is even. The warm-up gives the \
            rebalancer its first rounds; the first run of each exponent starts from the \
            default table, later ones from where the earlier runs left it.
            """)

    @Option(help: "Server thread counts, comma-separated.") var threads = "2"
    @Option(help: "Zipf exponents, comma-separated.") var exponents = "0.99,1.2"
    @Option(help: "Wire format (tcp-ascii, tcp-binary, udp-ascii, udp-binary).") var format: WireFormat = .udpASCII
    @Option(help: "Rounds per server (A B A B ...).") var rounds = 2
    @Option(help: "flexkvs binary (default: beside this flexbench).") var flexkvs: String?
    @Option(help: "Item memory, MB.") var memory = 256
    @Option(help: "Port of the rebalancing server; the other uses the next one.") var basePort: UInt16 = 21411
    @OptionGroup var options: LoadOptions

    func run() throws {
        let flexPath = try ServerProcess.flexkvsPath(flexkvs)
        let wire = format
        guard basePort < 65535 else { throw ValidationError("--base-port must leave room for the next port") }
        let threadCounts = try threads.split(separator: ",").map { s -> Int in
            guard let t = Int(s), t >= 2 else { throw ValidationError("--threads: \(s) (at least 2: one worker has nothing to balance)") }
            return t
        }
        let zipfs = try exponents.split(separator: ",").map { s -> Double in
            guard let z = Double(s), z > 0 else { throw ValidationError("--exponents: \(s)") }
            return z
        }
        for t in threadCounts {
            for z in zipfs {
                var o = options
                o.distribution = "zipf"
                o.zipf = z
                let w = o.workload()
                print("rebalance: -t \(t), \(w.keys) keys, Zipf \(z), \(Int(o.getRatio * 100))% GET, \(wire.rawValue), "
                      + "\(o.connections) sockets x depth \(o.depth), \(o.duration) s per run after \(o.warmup) s warm-up")
                var servers: [(String, UInt16, ServerProcess)] = []
                // Stops what started even when a later server fails to.
                defer { for (_, _, s) in servers { s.stop() } }
                for (name, port, interval) in [("rebalancing", basePort, 1.0), ("static", basePort + 1, 0.0)] {
                    servers.append((name, port, try ServerProcess(path: flexPath, arguments: [
                        "-t", "\(t)", "-p", "\(port)", "-U", "\(port)", "-l", "127.0.0.1", "-m", "\(memory)", "-c", "4096",
                        "--steering", "key", "--rebalance-interval", "\(interval)"], server: (.loopback, port))))
                }
                if !o.noPreload { for (_, port, _) in servers { try o.load((.loopback, port), .tcpASCII, w).preload() } }
                var sums: [String: (ops: Double, spread: Double)] = [:]
                for round in 0..<rounds {
                    for (name, port, _) in servers {
                        let before = try workerRequests(port: port, threads: t)
                        let r = try o.load((.loopback, port), wire, w).run()
                        let after = try workerRequests(port: port, threads: t)
                        // The warm-up's requests are in the difference too; close enough
                        // for a spread, and the same for both servers.
                        let served = zip(after, before).map { Double($0) - Double($1) }
                        let spread = served.max()! / max(1, served.reduce(0, +) / Double(t))
                        let moves = (try? steeringValue("shard_moves", port: port)) ?? "?"
                        print(String(format: "  %@ round %d: %.0f ops/s, worker loads %@, spread %.2f, shard moves so far %@",
                                     name, round + 1, r.throughput, served.map { String(Int($0)) }.joined(separator: "/"), spread, moves))
                        fflush(stdout)
                        sums[name, default: (0, 0)].ops += r.throughput
                        sums[name, default: (0, 0)].spread += spread
                    }
                }
                let a = sums["rebalancing"]!, b = sums["static"]!
                let n = Double(rounds)
                print(String(format: "RESULT rebalance threads=%d zipf=%.2f %@: spread %.2f (rebalancing) vs %.2f (static); "
                             + "throughput %.0f vs %.0f ops/s, ratio %.2fx",
                             t, z, wire.rawValue, a.spread / n, b.spread / n, a.ops / n, b.ops / n, a.ops / max(b.ops, 1)))
            }
        }
    }

    /// Requests each worker has served so far.
    func workerRequests(port: UInt16, threads: Int) throws -> [UInt64] {
        let lines = try Compare.statsSteering((.loopback, port))
        return (0..<threads).map { w in
            lines.first { $0.hasPrefix("worker:\(w):requests ") }.flatMap { UInt64($0.split(separator: " ").last!) } ?? 0
        }
    }

    func steeringValue(_ name: String, port: UInt16) throws -> String? {
        try Compare.statsSteering((.loopback, port)).first { $0.hasPrefix(name + " ") }.map { String($0.split(separator: " ").last!) }
    }
}
