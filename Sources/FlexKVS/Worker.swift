import CFlexSys
import FlexIO
import FlexNIC
import FlexWire
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// One core of the server: polls its TCP and UDP queues, steers each burst inline,
/// runs the protocol on what it steered to itself and sends the replies. This file
/// holds its round (`round`, `serve`) on a `CoreLoop` and state; the phases are in `Worker+TCP`,
/// `Worker+Forwarding` (TCP under key steering), `Worker+UDP` and `Worker+Placement`
/// (placed SETs).
final class Worker: @unchecked Sendable {
    /// The server owns its workers; unowned and unchecked (no reference counting on
    /// every access, and no cycle keeping a stopped server alive): a worker is only
    /// called by its server and by its thread, which holds the server while it runs.
    unowned(unsafe) let server: KVSServer
    let queue: Int
    let context: KVSContext
    let tcpSteering: SteeringEmulator
    let udpSteering: SteeringEmulator?
    /// `udpSteering` again, unretained, for the round (an optional's binding was retained
    /// and released on every round).
    let unretainedUDPSteering: Unmanaged<SteeringEmulator>?
    /// The server's ports, held here too: read through the unowned server, each was
    /// retained and released for every request.
    let tcpPort: KernelTCPPort
    let udp: (any PacketPort)?
    let tcpOut = PacketBatch(capacity: 32)
    let udpOut = PacketBatch(capacity: 32)
    /// Request buffers served this burst, returned to their port once per burst (one
    /// pool lock per burst, not per request).
    let tcpDone = PacketBatch(capacity: 64)
    let udpDone = PacketBatch(capacity: 64)
    let inbox = UnsafeMutablePointer<Descriptor>.allocate(capacity: 64)
    /// Hashes of a burst's requests for our partition, to prefetch, and those of one
    /// partition among them.
    let burstHashes = UnsafeMutablePointer<UInt32>.allocate(capacity: 64)
    /// The keys (and hashes) the last scan of a TCP session's requests found.
    let keyHints = KeyHints()
    let partitionHashes = UnsafeMutablePointer<UInt32>.allocate(capacity: 64)
    var sessions = SessionTable() { didSet { sessionCount.store(sessions.count, ordering: .relaxed) } }
    /// Open TCP sessions (`stats steering`: every closed connection's session is freed).
    let sessionCount = Atomic<Int>(0)
    /// Rings other workers' UDP pipelines (and ours) fill for this worker, mirrored
    /// unretained in `inboxes`. Set once, by the server once every worker exists and
    /// before any worker thread starts (a later write would race the rounds' reads).
    var udpInboxes: [DescriptorRing] = [] {
        didSet {
            precondition(oldValue.isEmpty, "a worker's UDP inboxes are set once")
            precondition(udpInboxes.count < inboxes.capacity, "more UDP pipelines than inbox slots")
            for (i, ring) in udpInboxes.enumerated() { inboxes.set(1 + i, ring) }
            udpInboxCount = udpInboxes.count
        }
    }
    /// The rings a round reads, unretained (read through an array each ring was retained
    /// and released on every round): slot 0 holds the one TCP requests arrive on (TCP
    /// stays with the accepting worker; `tcpSteering`'s pipeline owns it), slots 1 to
    /// `udpInboxCount` those of `udpInboxes`, which that array keeps alive.
    let inboxes = UnretainedReferences<DescriptorRing>(capacity: 1 + KVSServer.threadLimit)
    var udpInboxCount = 0
    /// The server's wakeups, held here: read through the unowned server, the set was
    /// retained for every wake.
    let wakeups: WakeSet
    /// Whether UDP arrives on a polled DPDK port (the loop never sleeps).
    let polls: Bool
    let udpSession = Session()
    /// The index of the UDP program's stage for binary GETs the pipeline parsed (dma
    /// steering; `serveParsedGet`), as a descriptor's `detail` names it; nil without it.
    let parsedGetStage: UInt8?
    /// GETs answered that way (written by this worker only).
    let parsedGets = Atomic<UInt64>(0)
    /// Requests served (written by this worker only; others read it).
    let requests = Atomic<UInt64>(0)
    let badFrames = Atomic<UInt64>(0)
    let arpAnswered = Atomic<UInt64>(0)
    /// Replies dropped because the port's transmit ring stayed full (`flush(full:port:)`).
    let transmitDropped = Atomic<UInt64>(0)
    /// Cycles per request, from when the pipeline sees the packet (the request's share of
    /// its burst's steering) to when the reply is queued.
    let cycles = CycleHistogram()
    /// The same without the steering share: the core's own cycles, what it would spend
    /// with the pipeline in a NIC (the thesis' measure: from when the stack sees the
    /// request to when its reply is queued; the emulated NIC ran on other cores there).
    let coreCycles = CycleHistogram()
    /// Cycles per packet of fetching bursts from the port (kernel I/O with sockets).
    let receiveCycles = CycleHistogram()

    /// Key steering over TCP: rings to and from the other workers, the buffers this
    /// worker's forwarded requests travel in, and how many are out per owner.
    let forwarding: TCPForwarding?
    let forwardPool: BufferPool?
    var inFlight: [Int]
    let forwardedSession = Session()
    /// Forwarding buffers at hand (taken from and returned to the pool in bursts) and
    /// ones to return.
    let forwardSpares = PacketBatch(capacity: 64)
    let forwardDone = PacketBatch(capacity: 64)
    let forwardInbox = UnsafeMutablePointer<ForwardedRequest>.allocate(capacity: 64)
    /// Workers to wake at the end of this round (they have forwarded work or replies).
    var wakeMask: UInt64 = 0
    /// Sessions whose output changed outside `handleTCP` (replies came back).
    var toSend: [(flow: UInt32, session: Session)] = []
    let forwarded = Atomic<UInt64>(0)
    let forwardedServed = Atomic<UInt64>(0)

    /// dma steering: the log segments this worker's partition registered with each
    /// worker's pipeline (index = pipeline).
    var placements: [PlacementLog] = []

    /// Largest request forwarded to another worker (larger ones run here, locked).
    static let forwardBufferSize = 4096

    init(server: KVSServer, queue: Int, logs: [LogSegments]? = nil, forwarding: TCPForwarding? = nil) throws {
        self.server = server
        self.queue = queue
        context = server.context
        self.forwarding = forwarding
        tcpPort = server.tcp
        udp = server.udp
        forwardPool = forwarding.map { BufferPool(bufferCount: 2 * $0.ringCapacity * max(1, $0.requests.count - 1), bufferSize: Self.forwardBufferSize) }
        inFlight = Array(repeating: 0, count: server.configuration.threads)
        toSend.reserveCapacity(64)
        let queues = server.configuration.threads
        warmer = server.warmsCores ? try CoreWarmer() : nil
        loop = CoreLoop(ports: [(server.tcp, queue)] + (server.udp.map { [($0, queue)] } ?? []), wakeups: server.wakeups,
                        member: queue, spinCycles: CoreLoop.spinCycles(threads: server.configuration.threads),
                        maximumSleep: .max, polledPortNap: 0, sleepsAfterWork: true, borrowsEventSet: true, warmer: warmer)
        tcpSteering = SteeringEmulator(
            port: server.tcp,
            pipeline: try SteeringPipeline(program: KVSPrograms.flow(protocolNumber: 6, port: server.tcp.port, queues: queues, own: queue)),
            rxQueue: queue, txQueue: queue)
        let table = server.context.store.replyTable
        inboxes.set(0, tcpSteering.pipeline.rings[queue])
        wakeups = server.wakeups
        polls = server.dpdk != nil
        udpSteering = try server.udp.map { udp in
            let port = server.udpPort ?? 0
            var program = server.configuration.steering != .flow
                ? KVSPrograms.key(port: port, queues: queues, own: queue, offload: table != nil, placing: logs != nil)
                : table != nil ? KVSPrograms.flowWithOffload(port: port, queues: queues, own: queue)
                               : KVSPrograms.flow(protocolNumber: 17, port: port, queues: queues, own: queue)
            // On an Ethernet link other hosts' traffic reaches the port too.
            if server.dpdk != nil { program = KVSPrograms.addressed(to: server.configuration.address, program) }
            // Key steering redirects by the store's shard table, shared by every worker.
            let pipeline = try SteeringPipeline(program: program, redirection: server.context.store.shards, logs: logs, replyTable: table)
            return SteeringEmulator(port: udp, pipeline: pipeline, rxQueue: queue, txQueue: queue)
        }
        unretainedUDPSteering = udpSteering.map { .passUnretained($0) }
        parsedGetStage = udpSteering?.pipeline.program.stages.firstIndex { $0.name == KVSPrograms.parsedGetStage }.map { UInt8($0) }
    }

    deinit {
        inboxes.deallocate()
        inbox.deallocate()
        forwardInbox.deallocate()
        burstHashes.deallocate()
        partitionHashes.deallocate()
    }

    var pipelineCounters: SteeringCounters.Snapshot {
        let t = tcpSteering.pipeline.counters.snapshot
        return udpSteering.map { t + $0.pipeline.counters.snapshot } ?? t
    }

    /// The worker's loop: it sleeps on its TCP (port 0) and UDP (port 1) queues and its
    /// wakeup, spinning a little first only with a core to spare, receives only from
    /// queues the sleep found readable, and goes to sleep straight after a round unless
    /// requests arrive often enough to spin: the sleep is the check for more. It sleeps
    /// with no timeout: whatever needs it (requests, other workers' deliveries and
    /// forwarded replies, `KVSServer.stop`) wakes it. On DPDK it keeps polling, as a
    /// poll-mode driver does.
    let loop: CoreLoop
    /// Wakes on the loop's core while the loop sleeps often (`KVSServer.Configuration.warmsCores`);
    /// its thread is the server's.
    let warmer: CoreWarmer?

    /// Runs rounds until the server stops.
    func run() {
        loop.run(while: { server.running.load(ordering: .relaxed) }, round, whenIdle: compactOrRefill)
    }

    /// One round: each phase once, then one wakeup per worker it fed.
    func round() -> CoreLoop.Round {
        let tcp = serve(tcpSteering, receiving: loop.isReady(port: 0), inboxes: 0..<1, out: tcpOut, done: tcpDone, udp: false)
        var work = tcp.work
        if let udp = unretainedUDPSteering {
            work += udp._withUnsafeGuaranteedRef {
                serve($0, receiving: loop.isReady(port: 1), inboxes: 1..<(1 + udpInboxCount), out: udpOut, done: udpDone, udp: true).work
            }
        }
        if forwarding != nil { work += serveForwarding() }
        if wakeMask != 0 {
            wakeOthers(wakeMask)
            wakeMask = 0
        }
        // Polling DPDK, the loop looks at the rings every round anyway: only the TCP
        // port's held frames, or a full TCP burst (more may wait), need saying.
        let hasMore = polls ? tcpPort.holdsFrames(queue: queue) || tcp.received == tcpSteering.burst : holdsWork
        return CoreLoop.Round(work: work, hasMore: hasMore)
    }

    /// Whether work waits that no descriptor of ours shows: descriptors left in our
    /// rings (more than a burst), frames the TCP port keeps for its next receive
    /// (connections it closed or resumed), replies to send (also those a port did not
    /// take in the round's one send).
    var holdsWork: Bool {
        if tcpPort.holdsFrames(queue: queue) || !toSend.isEmpty || !udpOut.isEmpty || !tcpOut.isEmpty { return true }
        if !tcpSteering.pipeline.slowPathRing.isEmpty { return true }
        if let udpSteering, !udpSteering.pipeline.slowPathRing.isEmpty { return true }
        for i in 0..<(1 + udpInboxCount) where !inboxes.with(i, { $0.isEmpty }) { return true }
        if let forwarding {
            for other in 0..<forwarding.requests.count where other != queue {
                if !forwarding.requests[other][queue].isEmpty || !forwarding.replies[other][queue].isEmpty { return true }
            }
        }
        return false
    }

    /// Idle housekeeping: compacts one segment of this worker's partition (then goes
    /// round again), or refills the log segments placed SETs are waiting for.
    func compactOrRefill() -> Bool {
        let store = context.store, own = queue % store.partitionCount
        if store.withLockedPartition(own, { $0.compactOne() }) { return true }
        for p in placements where !p.waiting.isEmpty { store.withLockedPartition(own) { _ in p.refill() } }
        return false
    }

    /// One burst from `steering`'s port: steer it, serve what the inbox rings in `slots`
    /// hold (steered by us or, under key steering, by other workers), free what went to
    /// the slow path (malformed frames), send the replies. Returns the packets received
    /// from the port (none unless `receiving`) and all the work done. `udp` picks the
    /// request handler.
    func serve(_ steering: SteeringEmulator, receiving: Bool, inboxes slots: Range<Int>, out: PacketBatch,
               done: PacketBatch, udp: Bool) -> (received: Int, work: Int) {
        // A flag, not a handler closure: the closure's context was retained per round.
        @inline(__always) func handle(_ d: Descriptor, _ share: UInt64) { if udp { handleUDP(d, share) } else { handleTCP(d, share) } }
        // A request's cycles count from when the pipeline sees its packet (its share of
        // the burst's steering) to when its reply is queued; the receive system call
        // before that is kernel I/O, counted apart (`receiveCycles`).
        let t0 = cflex_rdtsc()
        let n = receiving ? steering.receive() : 0
        var share: UInt64 = 0
        if n > 0 {
            let t1 = cflex_rdtsc()
            // The program's replies join this round's own in `out`, one send for both,
            // unless `out` still holds more than the port took last round.
            if out.freeSpace >= n { steering.steerReceived(replyingInto: out) } else { steering.steerReceived() }
            share = (cflex_rdtsc() &- t1) / UInt64(n)
            receiveCycles.record((t1 &- t0) / UInt64(n))
            wakeOthers(steering.pipeline.lastDelivered)
        }
        var served = 0
        for slot in slots {
            let got = inboxes.with(slot) { $0.dequeue(into: inbox, maximum: 64) }
            if got > 1 { prefetchLookups(got) }
            for i in 0..<got { handle(inbox[i], share) }
            served += got
        }
        let pipeline = steering.pipeline
        let slow = pipeline.slowPathRing.dequeue(into: inbox, maximum: 64)
        for i in 0..<slow {
            // A request no log segment could take, or one whose key the pipeline could
            // not find (none, or too long: memcached answers it with an error), is
            // served here like any other; on an Ethernet port, ARP requests for our
            // address are answered in place.
            if inbox[i].detail == SlowPathReason.logUnavailable.rawValue || inbox[i].detail == SlowPathReason.payloadOutOfRange.rawValue {
                handle(inbox[i], share)
            }
            else if let mac = server.dpdk?.macAddress, steering.port === server.dpdk,
                    ARP.answer(inbox[i].packet.bytes, for: server.configuration.address, with: mac) {
                if out.isFull { flush(full: out, port: steering.port) }
                out.append(inbox[i].packet)
                arpAnswered.wrappingAdd(1, ordering: .relaxed)
            } else { finished(inbox[i].packet, done, steering.port) }
        }
        if !out.isEmpty { _ = steering.port.transmit(queue: queue, out) }
        if !done.isEmpty { steering.port.release(done) }
        return (n, n + served)
    }

    /// Sends a full batch of replies. If the port takes none of it in 4 tries (its
    /// transmit ring stays full: a peer that does not drain it, a link that went down),
    /// the replies are dropped and counted, so the next one always finds room and no
    /// worker waits on one peer (as the steering emulator does with its replies).
    func flush(full batch: PacketBatch, port: any PacketPort) {
        var attempts = 0
        while batch.isFull && attempts < 4 {
            _ = port.transmit(queue: queue, batch)
            attempts += 1
        }
        guard batch.isFull else { return }
        transmitDropped.wrappingAdd(UInt64(batch.count), ordering: .relaxed)
        port.release(batch)
    }

    /// Prefetches the buckets and items the first `count` descriptors in `inbox` will
    /// look up in our partition (those whose key hash the pipeline computed), so the
    /// burst's cache misses overlap instead of coming one request at a time.
    func prefetchLookups(_ count: Int) {
        let store = context.store
        var n = 0
        for i in 0..<count {
            let h = inbox[i].hash
            if h != 0 && store.partitionIndex(for: h) == queue {
                burstHashes[n] = h
                n += 1
            }
        }
        prefetch(burstHashes, count: n)
    }

    /// Prefetches what looking up the first `count` of `hashes` will touch, partition
    /// by partition, each under its lock; nothing for fewer than two (one lookup has
    /// no misses to overlap).
    func prefetch(_ hashes: UnsafePointer<UInt32>, count: Int) {
        guard count > 1 else { return }
        let store = context.store
        var seen: UInt64 = 0
        for i in 0..<count {
            let p = store.partitionIndex(for: hashes[i])
            guard seen & (1 << UInt64(p)) == 0 else { continue }
            seen |= 1 << UInt64(p)
            var m = 0
            for j in i..<count where store.partitionIndex(for: hashes[j]) == p {
                partitionHashes[m] = hashes[j]
                m += 1
            }
            store.withLockedPartition(p) { $0.prefetch(UnsafeBufferPointer(start: partitionHashes, count: m)) }
        }
    }

    /// Queues a served request's buffer for release at the end of the burst.
    @inline(__always) func finished<Port: PacketPort>(_ p: Packet, _ done: PacketBatch, _ port: Port) {
        if done.isFull { port.release(done) }
        done.append(p)
    }

    /// Signals the workers whose rings the last burst fed (once per burst, not per
    /// request), so none sleeps on a request steered to it.
    func wakeOthers(_ delivered: UInt64) { wakeups.wake(mask: delivered, except: queue) }
}
