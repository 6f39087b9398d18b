import CFlexSys
import ArgumentParser
import FlexCLI
import FlexConfig
import FlexIO
import FlexKVS
import FlexWire
import Foundation
import Logging

/// flexkvs: a memcached-compatible key-value server on the FlexNIC steering layer.
@main
struct FlexKVSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flexkvs",
        abstract: "A memcached-compatible key-value server on the FlexNIC steering layer.",
        discussion: """
            Speaks memcached's text (incl. meta) and binary protocols over TCP, UDP and Unix sockets \
            (8-byte frame header). Flags follow memcached 1.6's and mean the same; \
            --config reads the same settings from TOML (see Configs/flexkvs.toml) and flags \
            given on the command line win. Stats: `stats`, `stats items`, `stats slabs`, \
            `stats settings`, `stats conns`, `stats detail`, `stats cachedump`, \
            `lru_crawler metadump`, and flexkvs's own `stats segments` and `stats steering`.

            Where flexkvs differs from memcached: -c counts client connections only \
            (memcached also counts its own descriptors against it, so it accepts about \
            10 + 3 x threads fewer); flexkvs runs as root without -u (DPDK needs root) and \
            says so at -v; it binds before dropping privileges (memcached drops first); a \
            client that does not read its replies is held back (its requests are not read \
            while more than 256 KiB of replies wait), so it holds at most about 2 MiB; a \
            get line may grow to 32 MiB; -k, -L, -r, -S and -Z are not accepted; of -o \
            only `maxconns_fast`, `tail_repair_time`, `hashpower`, `lru_crawler`, \
            `no_lru_crawler`, `lru_maintainer`, `no_lru_maintainer`, `modern`, \
            `no_modern`, `idle_timeout`, `slab_reassign`, `slab_automove` and \
            `hash_algorithm` are accepted, as settings with no effect here (flexkvs has no \
            slabs or LRU threads); others are warned about and ignored. Items live in log \
            segments evicted S3-FIFO style (recently read items are kept); `stats items` \
            and `stats slabs` report them in memcached's slab classes.
            """,
        version: KVSContext.version)

    @Option(name: .customShort("p"), help: "TCP port to listen on (default 11211).") var port: UInt16?
    @Option(name: .customShort("U"), help: "UDP port (0: off; default 0).") var udpPort: UInt16?
    @Option(name: .customShort("l"), help: "IPv4 address to listen on (default 127.0.0.1).") var listen: String?
    @Option(name: .customShort("t"), help: "Worker threads (default 1).") var threads: Int?
    @Option(name: .customShort("m"), help: "Item memory in megabytes (default 64).") var memory: Int?
    @Option(name: .customShort("c"), help: "Max simultaneous client connections (default 1024); one more is answered `ERROR Too many open connections` and closed, and counted in rejected_connections.") var connections: Int?
    @Option(name: .customShort("I"), help: "Max item size, e.g. 1m, 512k (default 1m); as memcached, it counts the item's header, key and flags, so the largest value is a little smaller.") var maxItemSize: String?
    @Option(name: .customShort("u"), help: "Run as this user after binding the ports (when started as root).") var user: String?
    @Option(name: .customShort("P"), help: "Write the server's pid to this file (removed on a clean exit).") var pidFile: String?
    @Flag(name: .customShort("d"), help: "Run as a daemon (in the background, detached from the terminal).") var daemonize = false
    @Option(name: .customShort("B"), help: "Binding protocol: auto, ascii or binary (default auto).") var bindingProtocol: String?
    @Flag(name: .customShort("F"), help: "Disable flush_all (answered `CLIENT_ERROR flush_all not allowed`).") var disableFlush = false
    @Flag(name: .customShort("C"), help: "Disable CAS (items carry CAS 0).") var disableCAS = false
    @Flag(name: .customShort("A"), help: "Enable the `shutdown` command.") var enableShutdown = false
    @Flag(name: .customShort("M"), help: "Return an error when memory is exhausted instead of evicting items.") var noEvictions = false
    @Option(name: .customShort("R"), help: "Requests per event (accepted for memcached compatibility; workers batch by burst).") var requestsPerEvent: Int?
    @Option(name: .customShort("b"), help: "TCP listen backlog (default 1024).") var backlog: Int32?
    @Option(name: .customShort("o"), parsing: .singleValue, help: "memcached's extended options, comma-separated key[=value] (see the discussion).") var extendedOptions: [String] = []
    @Option(name: .customShort("s"), help: "Listen on this Unix domain socket instead of TCP and UDP.") var unixSocket: String?
    @Option(name: .customShort("a"), help: "The Unix socket's access mask, octal (default 700).") var unixMask: String?
    @Option(help: "Item log segment size, e.g. 1m (raised to fit the largest item).") var segmentSize: String?
    @Option(help: ArgumentHelp("I/O for UDP: socket (kernel sockets) or dpdk.", discussion: """
        With dpdk, UDP requests arrive on a DPDK ethdev (--eal, --dpdk-device) with one queue \
        pair per thread: the server owns the -l address on that link, answers ARP for it and \
        drops (and counts) other traffic. TCP stays on kernel sockets at 127.0.0.1.
        """)) var io: PacketIO?
    @OptionGroup var dpdk: DPDKOptions
    @Option(help: "Steering: flow (by 4-tuple), key (to the key's shard's worker; TCP requests forwarded), dma (key + binary UDP SETs placed in the owner's log and lone binary UDP GETs answered without the protocol handler; needs -U, not with -B ascii).") var steering: KVSServer.Steering?
    @Option(help: "With key or dma steering and -t 2 or more: seconds between rebalancing rounds, which move shards from a worker carrying clearly more than its share of requests to the idlest (0: never move; default 1). Moves show in `stats steering`.") var rebalanceInterval: Double?
    @Option(help: "TOML file with these settings (Configs/flexkvs.toml).") var config: String?
    @Flag(help: "Do not answer hot keys' UDP GETs from the pipeline's reply table.") var noReplyOffload = false
    @Flag(help: ArgumentHelp("Run no warmer threads (one per worker on kernel sockets).", discussion: """
        While a worker goes to sleep 4,000 times a second or more, its warmer wakes on the \
        worker's core every 2 ms: on the virtual machines flexkvs was measured on, that makes \
        each of the worker's wakeups 3 to 4 us cheaper (memcached's LRU maintainer does the \
        same for it). Otherwise the warmer sleeps up to 64 ms at a time. `stats steering` \
        counts its warm rounds (core_warm_rounds).
        """)) var noWarmCores = false
    @Option(name: .customLong("xdp-offload"), help: ArgumentHelp("Also answer hot keys' UDP GETs in XDP on this interface (e.g. lo, eth0), before the kernel's network stack.", discussion: """
        Needs -U, root, and Linux 5.18 or later. An eBPF program built with flexkvs answers \
        `get <key>` datagrams for the reply table's keys with XDP_TX; every write to such a key \
        deletes it from the program's map before the write is acknowledged. Native XDP where \
        the driver has it (veth, most NICs), generic XDP elsewhere (lo). The program is detached \
        when flexkvs exits, however it exits. `stats steering` counts xdp_hits.
        """)) var xdpOffload: String?
    @Flag(name: .customShort("v"), help: "Verbose, to stderr in memcached's lines (-v: warnings and commands answered with an error; -vv: also connections opened and closed, every command and its reply's first line; -vvv: also binary requests).") var verbosity: Int
    /// Settings from a --config file; every field optional.
    struct FileSettings: Decodable {
        var listen: String?
        var tcp_port: Int?
        var udp_port: Int?
        var threads: Int?
        var memory_mb: Int?
        var max_connections: Int?
        var max_item_size: String?
        var segment_size: String?
        var io: String?
        var eal: String?
        var dpdk_device: String?
        var steering: String?
        var rebalance_interval: Double?
        var warm_cores: Bool?
    }

    /// memcached -o options accepted as settings without an effect here.
    static let inertOptions: Set<String> = [
        "maxconns_fast", "tail_repair_time", "hashpower", "lru_crawler", "no_lru_crawler", "lru_maintainer",
        "no_lru_maintainer", "modern", "no_modern", "idle_timeout", "slab_reassign", "slab_automove", "hash_algorithm",
    ]

    static func size(_ text: String, _ what: String) throws -> Int {
        let t = text.lowercased().trimmingCharacters(in: .whitespaces)
        let units: [(String, Int)] = [("k", 1 << 10), ("m", 1 << 20), ("g", 1 << 30), ("", 1)]
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            if let n = Int(t.dropLast(suffix.count)), n > 0 { return n * scale }
        }
        throw ValidationError("\(what) \"\(text)\": expected a size such as 1048576, 512k or 1m")
    }

    /// The server's configuration, and with `--io dpdk` the config file's EAL arguments
    /// and device (the flags take precedence): the port is opened in `run`, after `-d`
    /// forked.
    func settings() throws -> (KVSServer.Configuration, dpdkFromFile: (eal: String?, device: String?)?) {
        var file = FileSettings()
        if let config {
            guard let text = try? String(contentsOfFile: config, encoding: .utf8) else {
                throw RuntimeFailure("--config \(config): cannot read the file")
            }
            do {
                file = try TOMLInput.decode(FileSettings.self, from: text)
            } catch {
                throw RuntimeFailure("\(config): \(error) (Configs/flexkvs.toml shows every setting)")
            }
        }
        var c = KVSServer.Configuration()
        var dpdkFromFile: (eal: String?, device: String?)?
        let address = listen ?? file.listen ?? "127.0.0.1"
        guard let ip = IPv4Address(address) else { throw ValidationError("-l \(address): not an IPv4 address") }
        c.address = ip
        let tcp = port.map(Int.init) ?? file.tcp_port ?? 11211
        let udp = udpPort.map(Int.init) ?? file.udp_port ?? 0
        guard (1...65535).contains(tcp), (0...65535).contains(udp) else { throw ValidationError("ports must be 1...65535 (UDP 0 = off)") }
        c.tcpPort = UInt16(tcp)
        c.udpPort = udp == 0 ? nil : UInt16(udp)  // memcached's -U 0: UDP off
        c.threads = threads ?? file.threads ?? 1
        guard (1...KVSServer.threadLimit).contains(c.threads) else { throw ValidationError("-t must be 1...\(KVSServer.threadLimit)") }
        let megabytes = memory ?? file.memory_mb ?? 64
        guard megabytes >= 1 else { throw ValidationError("-m must be at least 1") }
        c.store.memoryLimit = megabytes << 20
        c.maxConnections = connections ?? file.max_connections ?? 1024
        guard c.maxConnections >= 1 else { throw ValidationError("-c must be at least 1") }
        c.store.maxItemSize = try Self.size(maxItemSize ?? file.max_item_size ?? "1m", "-I")
        guard c.store.maxItemSize <= 128 << 20 else { throw ValidationError("-I is at most 128m") }
        c.store.segmentSize = try Self.size(segmentSize ?? file.segment_size ?? "1m", "--segment-size")
        guard c.store.segmentSize & (c.store.segmentSize - 1) == 0 else { throw ValidationError("--segment-size must be a power of two") }
        var chosenIO = io ?? .socket
        if io == nil, let text = file.io {
            guard let v = PacketIO(rawValue: text) else { throw ValidationError("\(config ?? ""): io \"\(text)\": expected socket or dpdk") }
            chosenIO = v
        }
        switch chosenIO {
        case .socket:
            try dpdk.refuse()
        case .dpdk:
            guard dpdk.eal != nil || file.eal != nil else {
                throw ValidationError("--io dpdk needs --eal \"<EAL arguments>\", e.g. --eal \"--no-huge --no-pci -m 256 --vdev=net_af_packet0,iface=eth1\"")
            }
            guard c.udpPort != nil else { throw ValidationError("--io dpdk serves UDP: give -U PORT") }
            dpdkFromFile = (file.eal, file.dpdk_device)
            c.tcpAddress = .loopback
        }
        if let steering {
            c.steering = steering
        } else if let text = file.steering {
            guard let s = KVSServer.Steering(rawValue: text) else { throw ValidationError("\(config ?? ""): steering \"\(text)\": expected flow, key or dma") }
            c.steering = s
        }
        c.rebalancing.interval = rebalanceInterval ?? file.rebalance_interval ?? 1
        guard c.rebalancing.interval >= 0, c.rebalancing.interval.isFinite else {
            throw ValidationError("--rebalance-interval must be 0 (off) or a number of seconds")
        }
        c.replyOffload = !noReplyOffload
        c.warmsCores = !noWarmCores && (file.warm_cores ?? true)
        c.xdpOffload = xdpOffload  // KVSServer says what it needs (-U, kernel sockets, reply offload)
        c.verbosity = verbosity
        c.flushEnabled = !disableFlush
        c.store.casEnabled = !disableCAS
        c.store.evictionsEnabled = !noEvictions
        if let backlog {
            guard backlog > 0 else { throw ValidationError("-b must be at least 1") }
            c.backlog = backlog
        }
        if let requestsPerEvent {
            guard requestsPerEvent >= 1 else { throw ValidationError("-R must be at least 1") }
            c.requestsPerEvent = requestsPerEvent
        }
        c.shutdownEnabled = enableShutdown
        switch bindingProtocol ?? "auto" {
        case "auto", "negotiate": c.binding = .auto
        case "ascii": c.binding = .ascii
        case "binary": c.binding = .binary
        case let other: throw ValidationError("-B \(other): expected auto, ascii or binary")
        }
        if let unixSocket {
            guard let mask = UInt32(unixMask ?? "700", radix: 8), mask <= 0o777 else {
                throw ValidationError("-a \(unixMask ?? ""): expected an octal mask such as 700")
            }
            c.unixSocket = (unixSocket, mask)
            c.udpPort = nil  // as memcached: -s disables network support
        } else if unixMask != nil {
            throw ValidationError("-a sets the Unix socket's mask: give -s PATH with it")
        }
        for option in extendedOptions.flatMap({ $0.split(separator: ",") }) {
            let name = option.split(separator: "=", maxSplits: 1).first.map(String.init) ?? ""
            if !Self.inertOptions.contains(name) {
                FileHandle.standardError.write(Data("flexkvs: -o \(option): not supported here; ignored\n".utf8))
            }
        }
        return (c, dpdkFromFile)
    }

    func run() throws {
        var (c, dpdkFromFile) = try settings()
        // Made absolute now: a daemon changes its directory to /.
        let pidPath = pidFile.map { URL(fileURLWithPath: $0).path }
        if daemonize {
            // Before any thread starts: fork, detach, stdio to /dev/null unless verbose.
            guard daemon(0, verbosity > 0 ? 1 : 0) == 0 else { throw RuntimeFailure("-d: cannot daemonize (\(String(cString: strerror(errno))))") }
        }
        // -v output: memcached's plain lines on stderr.
        LoggingSystem.bootstrap { _ in MemcachedStyleLogHandler() }
        // Reply and backlog buffers of a megabyte or more come and go with clients: give
        // them their own mappings, returned to the kernel when freed, so memory goes back
        // down once the clients are gone (glibc's sliding threshold would keep them in the
        // heap after the first free).
        _ = cflex_malloc_tune(256 << 10, 4 << 20)
        let server: KVSServer
        do {
            if let dpdkFromFile {
                var dc = DPDKPort.Configuration()
                dc.rxQueues = c.threads
                dc.txQueues = c.threads
                c.io = .dpdk(try dpdk.openPort(configuration: dc, defaultEAL: dpdkFromFile.eal.map(DPDKEnvironment.split), defaultDevice: dpdkFromFile.device))
            }
            server = try KVSServer(c)
        } catch {
            throw RuntimeFailure("cannot start: \(error)")
        }
        try dropPrivileges()
        if enableShutdown { server.context.shutdown = { kill(getpid(), SIGTERM) } }
        if let pidPath {
            guard FileManager.default.createFile(atPath: pidPath, contents: Data("\(getpid())\n".utf8)) else {
                throw RuntimeFailure("-P \(pidPath): cannot write the pid file")
            }
        }
        Termination.install()
        server.start()
        let udp = server.udpPort.map { ", udp \($0)" } ?? ""
        let listening = server.tcp.unixPath.map { "unix \($0)" } ?? "\(c.address) tcp \(server.tcp.port)\(udp)"
        let io = server.dpdk.map { "dpdk \($0.name) \($0.driverName) mac \($0.macAddress), tcp on \(c.tcpAddress ?? c.address)" } ?? "socket"
        print("flexkvs \(KVSContext.version): \(listening), \(c.threads) thread(s), "
              + "\(c.store.memoryLimit >> 20) MB, steering \(c.steering.rawValue), io \(io)")
        fflush(stdout)
        // Serve until SIGINT/SIGTERM; SIGHUP is ignored (memcached reopens nothing on it
        // either) and SIGPIPE never kills the server.
        Termination.wait()
        server.stop()
        if let pidPath { unlink(pidPath) }
        if let socket = server.tcp.unixPath { unlink(socket) }
        print("flexkvs: stopped")
    }

    /// memcached's -u: once the ports are bound, a server started as root runs as the
    /// given user. Without -u it stays root (memcached refuses to; flexkvs allows it
    /// because DPDK needs root) and says so.
    func dropPrivileges() throws {
        guard getuid() == 0 || geteuid() == 0 else { return }
        guard let user else {
            if verbosity > 0 { FileHandle.standardError.write(Data("flexkvs: running as root (give -u USER to drop privileges)\n".utf8)) }
            return
        }
        guard let entry = getpwnam(user) else { throw RuntimeFailure("-u \(user): can't find the user") }
        _ = setgroups(0, nil)
        guard setgid(entry.pointee.pw_gid) == 0, setuid(entry.pointee.pw_uid) == 0 else {
            throw RuntimeFailure("-u \(user): failed to assume the user's identity (\(String(cString: strerror(errno))))")
        }
    }
}

/// Prints each log message alone on a line to stderr, as memcached's -v output is (the
/// messages are memcached's: `<id command`, `>id reply`); levels and metadata are not
/// printed.
struct MemcachedStyleLogHandler: LogHandler {
    var logLevel: Logger.Level = .info
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
             function: String, line: UInt) {
        FileHandle.standardError.write(Data((message.description + "\n").utf8))
    }
}

extension KVSServer.Steering: ExpressibleByArgument {}
