import ArgumentParser
import CFlexSys
import FlexCLI
import FlexIO
import FlexWire
import Foundation

/// `flexbench compare`: memcached 1.6 and flexkvs side by side, same thread count, same
/// load, alternating A B A B, and the ratio of their throughputs.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run the same load against memcached and flexkvs, A B A B, and print ratios.",
        discussion: """
            Starts both servers itself on loopback (ports 21211 and 21311 by default) \
            or behind a veth pair (--link veth), preloads the keys, and for every thread \
            count and wire format runs each server --rounds times alternately. Ratios \
            are flexkvs / memcached throughput, and memcached / flexkvs server CPU per \
            request: the user and system time the \
            server process used during a run (from /proc, warm-up included) over the \
            requests it served then (at the measured rate). Pin the servers and this \
            client apart (--server-cpu, --client-cpu) and give an open-loop --rate for a \
            fixed load. Machine CPU per request counts every core's busy time (/proc/stat, \
            this client's included): on loopback the kernel runs a server's receive \
            path, and an XDP program (--xdp-offload), in the sender's system calls, so \
            only this figure shows the whole cost. With --link veth the servers run in a \
            network namespace behind a veth pair whose ends receive in NAPI threads of \
            their own (pinned to --server-cpu and --client-cpu when given), as a NIC's \
            queues do: server+receive CPU per request adds the server end's receive \
            threads (and an XDP program's work) to the server's own. The machine is \
            shared, so only figures from one invocation are compared.
            """)

    @Option(help: "Server thread counts to compare, comma-separated.") var threads = "1,2"
    @Option(help: "Wire formats, comma-separated (tcp-ascii, tcp-binary, udp-ascii, udp-binary).") var formats = "tcp-ascii,udp-binary"
    @Option(help: "flexkvs steering modes, comma-separated (flow, key, dma).") var modes = "flow"
    @Option(help: "Rounds per server (A B A B ...).") var rounds = 2
    @Option(help: "memcached binary.") var memcached = "/usr/bin/memcached"
    @Option(help: "flexkvs binary (default: beside this flexbench).") var flexkvs: String?
    @Option(help: "Item memory for both servers, MB.") var memory = 1024
    @Option(help: "memcached's port.") var memcachedPort: UInt16 = 21211
    @Option(help: "flexkvs's port.") var flexkvsPort: UInt16 = 21311
    @Option(help: "Run both servers on these CPUs (taskset list, e.g. 1).") var serverCPU: String?
    @Option(help: "Run this load generator on these CPUs (taskset list, e.g. 0).") var clientCPU: String?
    @Option(help: ArgumentHelp(
        "Where the servers listen: loopback (127.0.0.1) or veth (198.18.9.2 in a network namespace; root).",
        discussion: "veth: each end of the pair receives in NAPI threads of its own, the server end's pinned to "
            + "--server-cpu and the client end's to --client-cpu when given, so neither side's receive runs in the other's "
            + "send system call as it does on loopback (Linux 5.13 or later, ethtool).")) var link: CompareLink = .loopback
    @Flag(help: "Start flexkvs with --xdp-offload on the server's interface (lo, or the veth end; root): XDP answers hot UDP GETs.") var xdpOffload = false
    @Option(help: ArgumentHelp(
        "A thread of this client sleeps this many microseconds in a loop on the first server CPU (needs --server-cpu).",
        discussion: "On a virtual machine a core's wakeup from a long idle costs its next task more CPU; memcached's "
            + "LRU maintainer wakes its core often under load, and so do flexkvs's core warmers (unless --no-warm-cores). "
            + "The same timer for both takes the servers' own threads out of the comparison. Neither server's CPU counts "
            + "it; machine CPU does.")) var coreTimer: UInt32?
    @OptionGroup var options: LoadOptions

    func run() throws {
        let flexPath = try ServerProcess.flexkvsPath(flexkvs, memcached: memcached)
        let threadCounts = try threads.split(separator: ",").map { s -> Int in
            guard let t = Int(s), t >= 1 else { throw ValidationError("--threads: \(s)") }
            return t
        }
        let wireFormats = try formats.split(separator: ",").map { s -> WireFormat in
            guard let f = WireFormat(rawValue: String(s)) else { throw ValidationError("--formats: \(s)") }
            return f
        }
        if let clientCPU { try ServerProcess.pin(getpid(), clientCPU) }
        if let coreTimer {
            guard coreTimer > 0 else { throw ValidationError("--core-timer: at least 1 microsecond") }
            guard let cpu = serverCPU.flatMap({ Int32($0.prefix { $0.isNumber }) }) else {
                throw ValidationError("--core-timer needs --server-cpu")
            }
            CoreThread.start(name: "core-timer") {
                _ = cflex_pin_thread(cpu)
                while true { usleep(coreTimer) }
            }
        }
        let veth = link == .veth ? try VethLink(serverCPU: serverCPU, clientCPU: clientCPU) : nil
        defer { if veth != nil { VethLink.remove() } }
        let address = veth != nil ? VethLink.serverAddress : .loopback
        let w = options.workload()
        print("compare: \(w.keys) keys, \(w.keySize) B keys, \(w.valueSize) B values, \(options.distribution) \(options.zipf), "
              + "\(Int(options.getRatio * 100))% GET, \(options.connections) sockets x depth \(options.depth), "
              + "\(options.duration) s per run, \(rounds) rounds A B, \(link.rawValue)" + (coreTimer.map { ", a \($0) us timer on the server core" } ?? ""))
        for t in threadCounts {
            for mode in modes.split(separator: ",").map(String.init) {
                let mc = try ServerProcess(path: memcached, arguments: ["-t", "\(t)", "-p", "\(memcachedPort)", "-U", "\(memcachedPort)",
                                                                        "-l", "\(address)", "-m", "\(memory)", "-c", "4096"]
                                                        + (getuid() == 0 ? ["-u", "root"] : []),
                                           server: (address, memcachedPort), cpus: serverCPU, inNamespace: veth != nil)
                defer { mc.stop() }
                let fx: ServerProcess
                do {
                    fx = try ServerProcess(path: flexPath, arguments: ["-t", "\(t)", "-p", "\(flexkvsPort)", "-U", "\(flexkvsPort)",
                                                                       "-l", "\(address)", "-m", "\(memory)", "-c", "4096", "--steering", mode]
                                                                       + (xdpOffload ? ["--xdp-offload", veth != nil ? VethLink.serverInterface : "lo"] : []),
                                           server: (address, flexkvsPort), cpus: serverCPU, inNamespace: veth != nil)
                } catch {
                    print("compare: flexkvs --steering \(mode) -t \(t): \(error)")
                    continue
                }
                defer { fx.stop() }
                try veth?.pinReceiveThreads()
                let targets = [("memcached", memcachedPort), ("flexkvs", flexkvsPort)]
                if !options.noPreload {
                    for (_, port) in targets { try options.load((address, port), .tcpASCII, w).preload() }
                }
                for f in wireFormats {
                    var best: [String: KVSLoad.Result] = [:]
                    var sums: [String: Double] = [:]
                    var cpuPerRequest: [String: [Double]] = [:]
                    var machinePerRequest: [String: [Double]] = [:]
                    var receivingPerRequest: [String: [Double]] = [:]
                    for round in 0..<rounds {
                        for (name, port) in targets {
                            let r: KVSLoad.Result
                            let server = name == "flexkvs" ? fx : mc
                            let cpuBefore = server.cpuSeconds, machineBefore = ServerProcess.machineBusySeconds
                            let receiveBefore = veth?.receiveCPUSeconds ?? 0
                            do {
                                r = try options.load((address, port), f, w).run()
                            } catch {
                                throw LoadError("\(name) round \(round + 1) (\(f.rawValue)): \(error)"
                                    + (server.process.isRunning ? "" : "; the server exited, its output: \(server.logPath)"))
                            }
                            sums[name, default: 0] += r.throughput
                            if round == 0 || r.throughput > best[name]!.throughput { best[name] = r }
                            let served = r.throughput * (options.warmup + options.duration)
                            let microseconds = (server.cpuSeconds - cpuBefore) / max(served, 1) * 1e6
                            cpuPerRequest[name, default: []].append(microseconds)
                            let machine = (ServerProcess.machineBusySeconds - machineBefore) / max(served, 1) * 1e6
                            machinePerRequest[name, default: []].append(machine)
                            var receiving = ""
                            if let veth {
                                let withReceive = microseconds + (veth.receiveCPUSeconds - receiveBefore) / max(served, 1) * 1e6
                                receivingPerRequest[name, default: []].append(withReceive)
                                receiving = String(format: "server+receive CPU %.2f us/request, ", withReceive)
                            }
                            print("  \(f.rawValue) t=\(t) \(name) round \(round + 1): \(r.summary), "
                                  + String(format: "server CPU %.2f us/request, ", microseconds) + receiving
                                  + String(format: "machine CPU %.1f us/request", machine))
                            fflush(stdout)
                        }
                    }
                    let a = sums["memcached"]! / Double(rounds), b = sums["flexkvs"]! / Double(rounds)
                    print(String(format: "RESULT %@ threads=%d steering=%@: memcached %.0f ops/s, flexkvs %.0f ops/s, ratio %.2fx",
                                 f.rawValue, t, mode, a, b, b / max(a, 1)))
                    // Per round pair (A B): memcached's CPU per request over flexkvs's.
                    let mean = { (v: [Double]) in v.reduce(0, +) / Double(max(v.count, 1)) }
                    for (what, perRequest) in [("server", cpuPerRequest), ("server+receive", receivingPerRequest), ("machine", machinePerRequest)]
                    where !perRequest.isEmpty {
                        let pairs = zip(perRequest["memcached"] ?? [], perRequest["flexkvs"] ?? []).map { $0 / max($1, 1e-9) }
                        print(String(format: "RESULT %@ threads=%d steering=%@: %@ CPU per request memcached %.2f us, flexkvs %.2f us, "
                                     + "memcached/flexkvs %.2f (pairs %@)", f.rawValue, t, mode, what, mean(perRequest["memcached"] ?? []),
                                     mean(perRequest["flexkvs"] ?? []), mean(pairs), pairs.map { String(format: "%.2f", $0) }.joined(separator: ", ")))
                    }
                    for (name, r) in best.sorted(by: { $0.key > $1.key }) {
                        print("  \(name) best round latency us: p50 \(r.latency.valueAtPercentile(50)) p90 \(r.latency.valueAtPercentile(90)) "
                              + "p99 \(r.latency.valueAtPercentile(99)) p99.9 \(r.latency.valueAtPercentile(99.9))")
                    }
                }
                if let steering = try? Self.statsSteering((address, flexkvsPort)) {
                    let cycles = steering.filter { $0.contains("cycles_per") }
                    print("  flexkvs server cycles/request (\(mode)): " + cycles.joined(separator: ", "))
                    let offload = steering.filter { $0.hasPrefix("xdp_") || $0.hasPrefix("reply_table_served") }
                    if !offload.isEmpty { print("  flexkvs reply offload: " + offload.joined(separator: ", ")) }
                }
            }
        }
    }

    /// `stats steering` lines from flexkvs.
    static func statsSteering(_ server: (IPv4Address, UInt16)) throws -> [String] {
        let fd = try KVSLoad.connect(server, udp: false, blocking: true)
        defer { close(fd) }
        try KVSLoad.sendAll(fd, Array("stats steering\r\n".utf8))
        var got: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 65536)
        while !String(decoding: got, as: UTF8.self).hasSuffix("END\r\n") {
            let n = recv(fd, &buf, buf.count, 0)
            guard n > 0 else { break }
            got += buf[..<n]
        }
        return String(decoding: got, as: UTF8.self).split(separator: "\r\n").map { String($0.dropFirst(5)) }
    }
}

/// Where `compare` runs the servers.
enum CompareLink: String, ExpressibleByArgument, CaseIterable {
    case loopback, veth
}

#if canImport(Glibc)
import Glibc
#endif
