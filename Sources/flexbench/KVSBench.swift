import ArgumentParser
import CFlexSys
import FlexCLI
import FlexIO
import FlexWire
import Foundation

/// Options shared by `kvs` and `compare`: the workload and how it is driven.
struct LoadOptions: ParsableArguments {
    @Option(help: "Keys in the key space.") var keys = 100_000
    @Option(help: "Key size in bytes.") var keySize = 32
    @Option(help: "Value size in bytes.") var valueSize = 64
    @Option(help: "Key popularity: zipf or uniform.") var distribution = "zipf"
    @Option(help: "Zipf skew s.") var zipf = 0.9
    @Option(help: "Fraction of requests that are GETs.") var getRatio = 0.9
    @Option(help: "Client sockets.") var connections = 4
    @Option(help: "Requests outstanding per socket (closed loop).") var depth = 8
    @Option(help: "Client threads.") var clientThreads = 1
    @Option(help: "Open loop at this many requests/s in total (0: closed loop).") var rate = 0.0
    @Option(help: "Warm-up seconds (not measured).") var warmup = 1.0
    @Option(help: "Measured seconds.") var duration = 5.0
    @Flag(help: "Skip storing every key before the run.") var noPreload = false

    func validate() throws {
        guard keys > 0, keySize >= 8, keySize <= 250, valueSize >= 1, valueSize <= 1 << 20 else {
            throw ValidationError("need keys > 0, 8 <= key-size <= 250, 1 <= value-size <= 1m")
        }
        guard String(keys - 1).count + 1 <= keySize else { throw ValidationError("--key-size too small for \(keys) keys") }
        guard KVSWorkload.Distribution(rawValue: distribution) != nil else { throw ValidationError("--distribution zipf|uniform") }
        guard (0...1).contains(getRatio), connections >= 1, depth >= 1, clientThreads >= 1, duration > 0, warmup >= 0 else {
            throw ValidationError("need 0 <= get-ratio <= 1, connections/depth/client-threads >= 1, duration > 0")
        }
    }

    func workload() -> KVSWorkload {
        KVSWorkload(keys: keys, keySize: keySize, valueSize: valueSize,
                    distribution: KVSWorkload.Distribution(rawValue: distribution)!, zipf: zipf, getRatio: getRatio)
    }

    func load(_ server: (IPv4Address, UInt16), _ format: WireFormat, _ w: KVSWorkload) -> KVSLoad {
        var l = KVSLoad(server: server, format: format, workload: w)
        l.connections = connections
        l.depth = depth
        l.threads = clientThreads
        l.rate = rate
        l.warmup = warmup
        l.duration = duration
        return l
    }
}

/// `flexbench kvs`: drive one memcached-compatible server and print throughput and
/// latency percentiles.
struct KVSBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kvs",
        abstract: "Memcached load generator: ops/s and p50/p90/p99/p99.9 latency.",
        discussion: "Workload as in the FlexNIC thesis: 100,000 keys of 32 B, 64 B values, Zipf 0.9, 90% GETs.")

    @Option(help: "Server IPv4:port.") var server = "127.0.0.1:11211"
    @Option(help: "Wire format: tcp-ascii, tcp-binary, udp-ascii, udp-binary.") var format: WireFormat = .tcpASCII
    @Option(help: ArgumentHelp("socket (kernel sockets) or dpdk (UDP over a DPDK port: --eal, --dpdk-device).", discussion: """
        e.g. --io dpdk --eal "--no-huge --no-pci -m 256 --file-prefix=client --vdev=net_memif0,role=client,socket=/tmp/kvs.sock,socket-abstract=no" \
        against `flexkvs --io dpdk` serving the memif's server end. One client thread; the preload goes over UDP too.
        """)) var io: PacketIO = .socket
    @OptionGroup var dpdk: DPDKOptions
    @Option(help: "The client's IPv4 address on the DPDK link.") var clientAddress = "198.18.0.1"
    @Flag(help: ArgumentHelp("With --io dpdk: find the server's maximum loss-free rate (MLFFR) instead of driving a closed or open loop.", discussion: """
        Request frames are built once and replayed in paced bursts, replies only counted, so the one client \
        thread can offer more than a server core can take; rates are bisected between 0 and the client's own \
        maximum, each trial lasting --duration seconds, after an unpaced trial that shows the throughput at \
        saturation. Also prints the server core's cycles per request at both (TSC cycles per second / rate: a \
        busy-polling server spends its whole core).
        """)) var mlffr = false
    @Option(help: "With --mlffr: the fraction of a trial's requests that may go unanswered.") var loss = 0.0001
    @Flag(help: "With --io dpdk: replay requests (at --rate, else as fast as the ring takes them) for --duration and never read a reply, as a peer that stopped reading.")
    var stopReading = false
    @OptionGroup var options: LoadOptions

    func run() throws {
        let target = try parseServer(server)
        let f = format
        let w = options.workload()
        var l = options.load(target, f, w)
        if io == .socket { try dpdk.refuse() }
        if io == .dpdk {
            guard f.isUDP else { throw ValidationError("--io dpdk carries UDP only: use --format udp-ascii or udp-binary") }
            guard options.clientThreads == 1 else { throw ValidationError("--io dpdk runs one client thread") }
            guard let ip = IPv4Address(clientAddress) else { throw ValidationError("--client-address \(clientAddress): not an IPv4 address") }
            l.link = try DPDKDatagramLink(port: dpdk.openPort(), address: ip, server: target)
            print("kvs: \(l.link!.port.name) \(ip) -> \(target.0) at \(l.link!.serverMAC) (ARP)")
        }
        if !options.noPreload {
            print("kvs: preloading \(w.keys) keys...")
            fflush(stdout)
            if l.link != nil {
                let r = try l.preloadOverUDP()
                print("kvs: preloaded \(r.operations) keys over UDP, \(r.timeouts) lost")
            } else {
                try l.preload()
            }
        }
        if mlffr || stopReading {
            guard let link = l.link else { throw ValidationError("--mlffr and --stop-reading need --io dpdk") }
            if mlffr { try searchMaximumLossFreeRate(link, format: f, workload: w) } else { try replayWithoutReading(link, format: f, workload: w) }
            return
        }
        print("kvs: \(f.rawValue) \(server), \(options.connections) sockets x \(options.rate > 0 ? "open loop \(Int(options.rate))/s" : "depth \(options.depth)"), \(options.duration) s")
        fflush(stdout)
        let r = try l.run()
        print("kvs: \(r.summary)")
        if let link = l.link, link.sendDrops > 0 { print("kvs: \(link.sendDrops) datagrams found no mbuf or tx room (counted as timeouts)") }
    }
}

extension KVSBench {
    func searchMaximumLossFreeRate(_ link: DPDKDatagramLink, format: WireFormat, workload: KVSWorkload) throws {
        guard (0..<1).contains(loss) else { throw ValidationError("--loss is a fraction in [0, 1)") }
        try DPDKEnvironment.asLcore {
            let replay = try FrameReplay(link: link, format: format, workload: workload, sockets: options.connections)
            print("kvs: MLFFR search, \(format.rawValue), \(options.duration) s per trial, at most \(loss * 100) % lost")
            fflush(stdout)
            var first = true
            let (best, saturation) = replay.search(seconds: options.duration, tolerance: loss) { t in
                print("kvs: \(first ? "unpaced" : "trial  ") \(t.line)")
                first = false
                fflush(stdout)
            }
            let hz = tscCyclesPerSecond()
            let rate = saturation.answeredRate
            guard rate > 0 else { throw LoadError("the server answered nothing (is it running, on the other end of the link?)") }
            print(String(format: "kvs: saturation %.3f M requests/s answered; server core %.0f cycles/request (TSC %.2f GHz)",
                         rate / 1e6, hz / rate, hz / 1e9)
                  + (saturation.refused > 0 ? "" : " (the ring never filled: the client, not the server, was the limit)"))
            guard let best else {
                print("kvs: no rate passed (the server lost more than \(loss * 100) % even at the lowest rate tried)")
                return
            }
            let bound = best.rate >= saturation.sentRate * 0.98 ? " (the client's maximum: the server was not saturated)" : ""
            print(String(format: "kvs: MLFFR %.3f M requests/s", best.answeredRate / 1e6) + bound
                  + String(format: "; server core %.0f cycles/request at it", hz / best.answeredRate))
        }
    }

    func replayWithoutReading(_ link: DPDKDatagramLink, format: WireFormat, workload: KVSWorkload) throws {
        try DPDKEnvironment.asLcore {
            let replay = try FrameReplay(link: link, format: format, workload: workload, sockets: options.connections)
            let t = replay.trial(rate: options.rate > 0 ? options.rate : 1e12, seconds: options.duration, receiving: false)
            print("kvs: sent \(t.sent) requests in \(String(format: "%.2f", t.seconds)) s without reading a reply (ring full \(t.refused), no mbuf \(t.noBuffer))")
        }
    }
}

/// The TSC's rate, measured against the monotonic clock over 200 ms.
func tscCyclesPerSecond() -> Double {
    let (c0, t0) = (cflex_rdtsc(), monotonicNanoseconds())
    usleep(200_000)
    let (c1, t1) = (cflex_rdtsc(), monotonicNanoseconds())
    return Double(c1 &- c0) / (Double(t1 - t0) / 1e9)
}

func parseServer(_ text: String) throws -> (IPv4Address, UInt16) {
    let parts = text.split(separator: ":")
    guard parts.count == 2, let ip = IPv4Address(String(parts[0])), let port = UInt16(parts[1]) else {
        throw ValidationError("server must be IPv4:port, not \(text)")
    }
    return (ip, port)
}
