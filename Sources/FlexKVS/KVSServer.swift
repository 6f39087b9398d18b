import FlexIO
import FlexNIC
import FlexWire
import Foundation
import Synchronization

/// flexkvs: `threads` workers, each owning one SO_REUSEPORT TCP queue and one UDP
/// queue (a kernel socket, or a DPDK ethdev's rx/tx queue pair with `IO.dpdk`). A worker runs the steering program inline on its own bursts
/// (no emulator thread: cores are scarce), then serves the descriptors steered to it.
///
/// - flow steering: the kernel spreads flows over workers by their 4-tuple; a worker
///   serves everything it received, touching any partition.
/// - key steering: over UDP the pipeline parses each request, hashes its key once, and
///   steers it over an SPSC ring to the worker its shard's redirection-table entry
///   names (`KVStore.shards`), handing over the hash; that worker serves it and replies.
///   A TCP connection stays with the worker that accepted it; requests whose shard
///   another worker owns are forwarded to it over rings (`TCPForwarding`) and their
///   replies keep the connection's order. A rebalancer moves shards from a worker that
///   carries clearly more than its share to the idlest (`ShardBalancer`).
/// - dma steering: key steering, and each partition registers log segments with every
///   worker's pipeline; the pipeline appends binary UDP SETs into the owner's segment
///   laid out as items, and the owner writes the item header and links it.
///
/// Partitions keep their locks in every mode: a multi-key get, a slow-path request or
/// one racing a shard move may still reach a foreign partition. Under key steering they
/// are uncontended.
public final class KVSServer: @unchecked Sendable {
    public enum Steering: String, Sendable, CaseIterable {
        case flow, key
        /// Key steering, and the pipeline places binary UDP SETs into the owning
        /// partition's registered log segments (`PlacementLog`).
        case dma
    }

    /// Where UDP requests arrive.
    public enum IO: Sendable {
        /// Kernel sockets (SO_REUSEPORT, one queue per worker).
        case socket
        /// An opened DPDK ethdev with at least one rx and tx queue per worker (the
        /// caller initializes the EAL and opens it, as FlexStorm's node is handed its
        /// port). The server owns `address` on that link: it answers ARP for it and
        /// serves UDP sent to it; everything else is dropped and counted. TCP stays on
        /// kernel sockets at `tcpAddress` (there is no TCP stack over DPDK).
        case dpdk(DPDKPort)
    }

    public struct Configuration: Sendable {
        public var io = IO.socket
        public var steering = Steering.flow
        /// Answer hot keys' UDP GETs from the pipeline's reply table (Santa).
        public var replyOffload = true
        /// Also answer them in XDP on this interface, before the network stack (BMC);
        /// needs UDP on kernel sockets and `replyOffload`.
        public var xdpOffload: String? = nil
        public var address = IPv4Address.loopback
        /// Kernel TCP listens here; nil: `address`.
        public var tcpAddress: IPv4Address? = nil
        public var tcpPort: UInt16 = 11211
        /// nil: no UDP; 0: an ephemeral port.
        public var udpPort: UInt16? = nil
        public var threads = 1
        public var maxConnections = 1024
        /// Listen on this Unix domain socket, with these permissions, instead of TCP
        /// and UDP (memcached's -s and -a).
        public var unixSocket: (path: String, accessMask: UInt32)? = nil
        /// The TCP listen backlog (memcached's -b).
        public var backlog: Int32 = 1024
        /// flush_all allowed (memcached's -F turns it off).
        public var flushEnabled = true
        /// The `shutdown` command allowed (memcached's -A); the server's owner says what
        /// it does (`KVSContext.shutdown`).
        public var shutdownEnabled = false
        /// memcached's -R (reported; workers batch by burst, not by a request count).
        public var requestsPerEvent = 20
        public var store = KVStore.Configuration()
        /// memcached's -v count: 1 errors, 2 connections and commands, 3 binary requests too.
        public var verbosity = 0
        /// memcached's -B: which protocols connections may speak.
        public var binding = KVSContext.Binding.auto
        /// Online rebalancing under key and dma steering with more than one thread
        /// (interval 0: off; it is off with -M, where moving items could fail).
        public var rebalancing = ShardBalancer.Policy()
        /// A `CoreWarmer` thread per worker on kernel sockets: at moderate rates it
        /// makes the worker's wakeups cheaper (see `CoreWarmer`).
        public var warmsCores = true
        public init() {}
    }

    /// Whether the workers have core warmers: asked for, and they sleep (polling DPDK,
    /// they never do).
    var warmsCores: Bool { configuration.warmsCores && dpdk == nil }

    /// Whether the server moves shards between workers as their load changes.
    public var rebalances: Bool {
        configuration.steering != .flow && configuration.threads > 1 && configuration.rebalancing.interval > 0
            && configuration.store.evictionsEnabled
    }

    /// Log segments each partition registers with each worker's pipeline under dma
    /// steering (a core registers 4 in all, or 2 per pipeline with more workers).
    static func placingSegments(threads: Int) -> Int { max(2, 4 / threads) }

    public let configuration: Configuration
    public let context: KVSContext
    public let tcp: KernelTCPPort
    /// The UDP queues: kernel sockets, or the DPDK port.
    public let udp: (any PacketPort)?
    /// The UDP port served (the bound one when 0 was asked for).
    public let udpPort: UInt16?
    /// With `--io dpdk`: the ethdev UDP arrives on (also `udp`).
    public let dpdk: DPDKPort?
    /// With `xdpOffload`: the attached XDP program (the reply table's mirror).
    public let xdp: XDPReplyOffload?
    var workers: [Worker] = []
    /// Workers signal each other when they steer requests to one that may sleep.
    let wakeups: WakeSet
    let running = Atomic<Bool>(false)
    let finished = DispatchSemaphore(value: 0)
    /// The rebalancer's state, read by `stats steering` (guarded by `balancerLock`).
    var balancer: ShardBalancer
    let balancerLock = NSLock()

    /// Worker threads a server may run: a worker's wakeups and steering verdicts are
    /// 64-bit masks over the workers.
    public static let threadLimit = 64

    public init(_ c: Configuration) throws {
        guard (1...Self.threadLimit).contains(c.threads) else {
            throw ConfigurationError("threads must be 1...\(Self.threadLimit), not \(c.threads)")
        }
        configuration = c
        wakeups = try WakeSet(count: c.threads)
        var storeConfig = c.store
        // One partition per worker; the store's redirection table (its shards) is the
        // one every key-steering pipeline redirects by.
        storeConfig.partitions = c.threads
        let store = KVStore(storeConfig, replyTable: c.replyOffload && c.udpPort != nil ? ReplyTable(slots: 4096) : nil)
        balancer = ShardBalancer(shards: store.shards.count, workers: c.threads, policy: c.rebalancing)
        context = KVSContext(store: store, threads: c.threads)
        // Backlog: a session's budget, one reply over it, and what the pipeline had in
        // flight; beyond that the owner is at fault.
        let maxPending = 8 << 20 + 2 * (Session.tcpOutputBudget + c.store.maxItemSize)
        let reject = "ERROR Too many open connections\r\n"
        if let unix = c.unixSocket {
            guard c.udpPort == nil, case .socket = c.io else {
                throw ConfigurationError("-s serves a Unix domain socket only: give no -U and no --io dpdk with it")
            }
            tcp = try KernelTCPPort(unixPath: unix.path, accessMask: unix.accessMask, queues: c.threads, maxConnections: c.maxConnections,
                                    maxPendingOutput: maxPending, rejectMessage: reject, backlog: c.backlog)
        } else {
            tcp = try KernelTCPPort(address: c.tcpAddress ?? c.address, port: c.tcpPort, queues: c.threads, maxConnections: c.maxConnections,
                                    maxPendingOutput: maxPending, rejectMessage: reject, backlog: c.backlog)
        }
        context.maxConnections = c.maxConnections
        context.binding = c.binding
        context.verbosity.store(c.verbosity, ordering: .relaxed)
        context.flushEnabled = c.flushEnabled
        switch c.io {
        case .socket:
            // Buffers take the largest datagram (memcached reads requests of up to 64 KB):
            // the pool is reserved, not touched, and reused last-in first-out.
            let kernel = try c.udpPort.map {
                try KernelUDPPort(address: c.address, port: $0, queues: c.threads, bufferCount: 1024,
                                  bufferSize: FrameBuilder.udpHeadersLength + MemcachedUDPFrame.maximumRequest)
            }
            udp = kernel
            udpPort = kernel?.port
            dpdk = nil
        case let .dpdk(ethdev):
            guard let port = c.udpPort, port != 0 else {
                throw ConfigurationError("--io dpdk serves UDP on the DPDK port: give it a UDP port (-U PORT)")
            }
            guard ethdev.rxQueueCount >= c.threads, ethdev.txQueueCount >= c.threads else {
                throw ConfigurationError("\(ethdev.name) has \(ethdev.rxQueueCount) rx and \(ethdev.txQueueCount) tx queues; \(c.threads) workers need as many each")
            }
            udp = ethdev
            udpPort = port
            dpdk = ethdev
        }
        if let interface = c.xdpOffload {
            guard dpdk == nil, let port = udpPort, let table = store.replyTable else {
                throw ConfigurationError("--xdp-offload answers UDP GETs before the kernel's stack: it needs UDP on kernel sockets (-U PORT, no --io dpdk) and reply offload (no --no-reply-offload)")
            }
            let offload = try XDPReplyOffload(interface: interface, address: c.address, port: port)
            table.mirror = offload
            xdp = offload
        } else {
            xdp = nil
        }
        // memcached's `stats settings`, in its order; what flexkvs has no such machinery
        // for (slab mover, LRU threads, extstore, TLS) reads as memcached's defaults or off.
        // maxbytes, verbosity and detail_enabled are filled in when asked (they change).
        context.settings = [
            ("maxbytes", ""), ("maxconns", String(c.maxConnections)), ("tcpport", String(tcp.port)),
            ("udpport", String(udpPort ?? 0)), ("inter", c.address.description), ("verbosity", ""), ("oldest", "0"),
            ("evictions", c.store.evictionsEnabled ? "on" : "off"), ("domain_socket", c.unixSocket?.path ?? "NULL"),
            ("umask", String(c.unixSocket?.accessMask ?? 0o700, radix: 8)),
            ("shutdown_command", c.shutdownEnabled ? "yes" : "no"), ("growth_factor", "1.25"), ("chunk_size", "48"),
            ("num_threads", String(c.threads)), ("num_threads_per_udp", String(c.threads)), ("stat_key_prefix", ":"),
            ("detail_enabled", ""), ("reqs_per_event", String(c.requestsPerEvent)),
            ("cas_enabled", c.store.casEnabled ? "yes" : "no"), ("tcp_backlog", String(c.backlog)),
            ("binding_protocol", c.binding.rawValue), ("auth_enabled_sasl", "no"), ("auth_enabled_ascii", "no"),
            ("item_size_max", String(store.maxItemSize)), ("maxconns_fast", "yes"), ("hashpower_init", "0"),
            ("slab_reassign", "no"), ("slab_automove", "0"), ("slab_automove_ratio", "0.80"), ("slab_automove_window", "30"),
            ("slab_chunk_max", String(SizeClasses.chunkMax)), ("lru_crawler", "no"), ("lru_crawler_sleep", "100"),
            ("lru_crawler_tocrawl", "0"), ("tail_repair_time", "0"), ("flush_enabled", c.flushEnabled ? "yes" : "no"),
            ("dump_enabled", "yes"), ("hash_algorithm", "murmur3"), ("lru_maintainer_thread", "no"), ("lru_segmented", "no"),
            ("hot_lru_pct", "20"), ("warm_lru_pct", "40"), ("hot_max_factor", "0.20"), ("warm_max_factor", "2.00"),
            ("temp_lru", "no"), ("temporary_ttl", "61"), ("idle_timeout", "0"), ("watcher_logbuf_size", "262144"),
            ("worker_logbuf_size", "65536"), ("read_buf_mem_limit", "0"), ("track_sizes", "no"), ("inline_ascii_response", "no"),
            ("ext_item_size", "512"), ("ext_item_age", "4294967295"), ("ext_low_ttl", "0"), ("ext_recache_rate", "2000"),
            ("ext_wbuf_size", "4194304"), ("ext_compact_under", "0"), ("ext_drop_under", "0"), ("ext_max_sleep", "1000000"),
            ("ext_max_frag", "0.80"), ("slab_automove_freeratio", "0.010"), ("ext_drop_unread", "no"), ("ssl_enabled", "no"),
            ("ssl_chain_cert", "(null)"), ("ssl_key", "(null)"), ("ssl_verify_mode", "0"), ("ssl_keyformat", "1"),
            ("ssl_ciphers", "NULL"), ("ssl_ca_cert", "NULL"), ("ssl_wbuf_size", "16384"), ("ssl_session_cache", "no"),
            ("ssl_kernel_tls", "no"), ("ssl_min_version", "tlsv1.2"), ("num_napi_ids", "(null)"), ("memory_file", "(null)"),
            // flexkvs's own.
            ("segment_size", String(store.pool.segmentSize)), ("steering", c.steering.rawValue),
            ("io", dpdk == nil ? "socket" : "dpdk"), ("reply_offload", store.replyTable == nil ? "no" : "yes"),
            ("xdp_offload", xdp.map { "\($0.interface) (\($0.mode))" } ?? "no"),
            ("warm_cores", warmsCores ? "yes" : "no"),
        ]
        // dma: partition q registers segments with every worker w's pipeline.
        if c.steering == .dma {
            guard c.udpPort != nil else {
                throw ConfigurationError("--steering dma places binary UDP SETs: enable UDP (-U PORT)")
            }
            guard c.binding != .ascii else {
                throw ConfigurationError("--steering dma places binary UDP SETs and answers binary GETs: it cannot run with -B ascii")
            }
            let placing = Self.placingSegments(threads: c.threads) * c.threads
            let quota = Partition.quota(of: store)
            guard quota >= placing + 2 else {
                let need = (placing + 2) * c.threads * store.pool.segmentSize
                throw ConfigurationError("-m \(c.store.memoryLimit >> 20) is too small for --steering dma with \(c.threads) thread(s): "
                    + "each partition registers \(placing) segments of \(store.pool.segmentSize >> 10) KiB and needs 2 more; use -m \((need + (1 << 20) - 1) >> 20) or more")
            }
        }
        let placements: [[PlacementLog]] = c.steering == .dma
            ? try store.partitions.map { p in
                try (0..<c.threads).map { _ in try PlacementLog(partition: p, count: Self.placingSegments(threads: c.threads)) }
            }
            : []
        let forwarding = c.steering != .flow && c.threads > 1 ? TCPForwarding(workers: c.threads) : nil
        workers = try (0..<c.threads).map { w in
            try Worker(server: self, queue: w, logs: placements.isEmpty ? nil : placements.map { $0[w].segments },
                       forwarding: forwarding)
        }
        for (q, logs) in placements.enumerated() { workers[q].placements = logs }
        // Worker q consumes ring q of every worker's UDP pipeline (key steering); under
        // flow steering only its own pipeline ever fills its ring.
        for w in workers { w.udpInboxes = workers.compactMap { $0.udpSteering?.pipeline.rings[w.queue] } }
        context.steeringStats = { [unowned self] in self.steeringStats() }
        context.udpConnections = udp == nil ? 0 : c.threads
        context.transport = { [unowned self] in
            var t = KVSContext.TransportCounters()
            let tcp = self.tcp.statistics
            let udp = self.udp?.statistics
            t.bytesRead = tcp.receivedBytes + (udp?.receivedBytes ?? 0)
            t.bytesWritten = tcp.transmittedBytes + (udp?.transmittedBytes ?? 0)
            t.rejectedConnections = self.tcp.refusedConnections
            t.currentConnections = self.tcp.openConnections
            t.totalConnections = self.tcp.acceptedConnections
            return t
        }
        context.offloadedGets = { [unowned self] in
            let table = self.context.store.replyTable?.served.load(ordering: .relaxed) ?? 0
            return Int64(table + (self.xdp?.counters.hits ?? 0))
        }
    }

    /// A configuration the server cannot run with.
    public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
        public let description: String
        init(_ description: String) { self.description = description }
    }

    /// Runs the workers on threads of their own; returns at once.
    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for w in workers {
            let t = Thread { [self] in
                if dpdk != nil { DPDKEnvironment.asLcore(w.run) } else { w.run() }
                finished.signal()
            }
            t.name = "flexkvs-worker-\(w.queue)"
            t.start()
            if let warmer = w.warmer {
                let t = Thread {
                    warmer.run()
                    self.finished.signal()
                }
                t.name = "flexkvs-warm-\(w.queue)"
                t.start()
            }
        }
        if rebalances {
            let t = Thread { [self] in
                rebalance()
                finished.signal()
            }
            t.name = "flexkvs-rebalancer"
            t.start()
        }
    }

    /// Stops the workers (with their warmers, and the rebalancer) and waits for them.
    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        wakeups.wakeAll()  // workers sleep with no timeout
        for w in workers { w.warmer?.stop() }
        for _ in 0..<(workers.count + workers.filter { $0.warmer != nil }.count + (rebalances ? 1 : 0)) { finished.wait() }
        dpdk?.stop()
        xdp?.detach()
    }

    /// The rebalancer's thread: every interval, one `ShardBalancer` round over the
    /// shards' request counts, and the moves it plans.
    func rebalance() {
        let store = context.store
        let step = 0.05
        var waited = 0.0
        while running.load(ordering: .relaxed) {
            Thread.sleep(forTimeInterval: step)
            waited += step
            guard waited >= configuration.rebalancing.interval else { continue }
            waited = 0
            let counts = (0..<store.shards.count).map { store.requests(ofShard: $0) }
            let owners = store.shards.snapshot
            balancerLock.lock()
            let moves = balancer.plan(counts: counts, owners: owners)
            balancerLock.unlock()
            for m in moves {
                store.moveShard(m.shard, to: m.to)
                if context.logs(2) { context.logger.info("shard \(m.shard) moved to worker \(m.to)") }
            }
        }
    }

    func steeringStats() -> [(String, String)] {
        let store = context.store
        var out: [(String, String)] = [("mode", configuration.steering.rawValue), ("workers", String(workers.count))]
        balancerLock.lock()
        let b = balancer
        balancerLock.unlock()
        out += [("rebalancing", rebalances ? "on" : "off"), ("rebalance_rounds", String(b.round)),
                ("load_imbalance", String(format: "%.2f", b.imbalance)), ("rebalance_paused_rounds", String(b.pausedRounds)),
                ("shard_moves", String(store.shardMoves.load(ordering: .relaxed))),
                ("shard_items_moved", String(store.itemsMoved.load(ordering: .relaxed)))]
        var shardsPerWorker = [Int](repeating: 0, count: workers.count)
        var requestsPerWorker = [UInt64](repeating: 0, count: workers.count)
        var shardLines: [(String, String)] = []
        for s in 0..<store.shards.count {
            let owner = store.shards[s], n = store.requests(ofShard: s)
            if owner < workers.count {
                shardsPerWorker[owner] += 1
                requestsPerWorker[owner] += n
            }
            if n > 0 { shardLines += [("shard:\(s):worker", String(owner)), ("shard:\(s):requests", String(n))] }
        }
        if let t = context.store.replyTable {
            out += [("reply_table_served", String(t.served.load(ordering: .relaxed))),
                    ("reply_table_installs", String(t.installs.load(ordering: .relaxed))),
                    ("reply_table_invalidations", String(t.invalidations.load(ordering: .relaxed)))]
        }
        if let xdp {
            let c = xdp.counters
            out += [("xdp_hits", String(c.hits)), ("xdp_misses", String(c.misses)), ("xdp_no_room", String(c.noRoom))]
        }
        for w in workers {
            let c = w.pipelineCounters
            let p = "worker:\(w.queue):"
            out += [(p + "shards", String(shardsPerWorker[w.queue])), (p + "shard_requests", String(requestsPerWorker[w.queue])),
                    (p + "packets", String(c.packets)), (p + "steered", String(c.queueSteered.dropLast().reduce(0, +))),
                    (p + "steered_to_others", String(c.queueSteered.dropLast().enumerated().filter { $0.offset != w.queue }.reduce(0) { $0 + $1.element })),
                    (p + "slow_path", String(c.slowPathTotal)), (p + "dropped_full", String(c.queueDroppedFull.reduce(0, +))),
                    (p + "requests", String(w.requests.load(ordering: .relaxed))),
                    (p + "tcp_sessions", String(w.sessionCount.load(ordering: .relaxed))),
                    (p + "cycles_per_request_median", String(w.cycles.median())),
                    (p + "cycles_per_request_p90", String(w.cycles.percentile(0.9))),
                    (p + "core_cycles_per_request_median", String(w.coreCycles.median())),
                    (p + "core_cycles_per_request_p90", String(w.coreCycles.percentile(0.9))),
                    (p + "receive_cycles_per_packet_median", String(w.receiveCycles.median())),
                    (p + "udp_bad_frames", String(w.badFrames.load(ordering: .relaxed))),
                    (p + "arp_answered", String(w.arpAnswered.load(ordering: .relaxed))),
                    (p + "transmit_dropped", String(w.transmitDropped.load(ordering: .relaxed))),
                    (p + "tcp_forwarded", String(w.forwarded.load(ordering: .relaxed))),
                    (p + "tcp_forwarded_served", String(w.forwardedServed.load(ordering: .relaxed))),
                    (p + "replies_unsent", String(w.tcpSteering.droppedReplies + (w.udpSteering?.droppedReplies ?? 0))),
                    (p + "core_warm_rounds", w.warmer.map { String($0.warmRounds.load(ordering: .relaxed)) } ?? "off")]
            if !w.placements.isEmpty {
                out += [(p + "placed_sets", String(w.placements.reduce(0) { $0 + $1.placed })),
                        (p + "placed_records_lost", String(w.placements.reduce(0) { $0 + $1.lost })),
                        (p + "placed_segments_adopted", String(w.placements.reduce(0) { $0 + $1.adopted })),
                        (p + "parsed_gets", String(w.parsedGets.load(ordering: .relaxed)))]
            }
            for (i, m) in c.stageMatched.enumerated() { out.append((p + "stage:\(i):matched", String(m))) }
        }
        return out + shardLines
    }
}
