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
/// runs the protocol on what it steered to itself and sends the replies.
final class Worker: @unchecked Sendable {
    let server: KVSServer
    let queue: Int
    let context: KVSContext
    let tcpSteering: SteeringEmulator
    let udpSteering: SteeringEmulator?
    let tcpOut = PacketBatch(capacity: 32)
    let udpOut = PacketBatch(capacity: 32)
    /// Request buffers served this burst, returned to their port once per burst (one
    /// pool lock per burst, not per request).
    let tcpDone = PacketBatch(capacity: 64)
    let udpDone = PacketBatch(capacity: 64)
    let inbox = UnsafeMutablePointer<Descriptor>.allocate(capacity: 64)
    /// Hashes of a burst's requests for our partition, to prefetch.
    let burstHashes = UnsafeMutablePointer<UInt32>.allocate(capacity: 64)
    var sessions: [UInt32: Session] = [:] { didSet { sessionCount.store(sessions.count, ordering: .relaxed) } }
    /// Open TCP sessions (`stats steering`: every closed connection's session is freed).
    let sessionCount = Atomic<Int>(0)
    /// Rings other workers' UDP pipelines (and ours) fill for this worker.
    var udpInboxes: [DescriptorRing] = []
    /// The one ring TCP requests arrive on (TCP stays with the accepting worker).
    let tcpInboxes: [DescriptorRing]
    let udpSession = Session()
    let requests = Atomic<UInt64>(0)
    let badFrames = Atomic<UInt64>(0)
    let arpAnswered = Atomic<UInt64>(0)
    let cycles = CycleHistogram()
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
        forwardPool = forwarding.map { BufferPool(bufferCount: 2 * $0.ringCapacity * max(1, $0.requests.count - 1), bufferSize: Self.forwardBufferSize) }
        inFlight = Array(repeating: 0, count: server.configuration.threads)
        toSend.reserveCapacity(64)
        let queues = server.configuration.threads
        tcpSteering = SteeringEmulator(
            port: server.tcp,
            pipeline: try SteeringPipeline(program: KVSPrograms.flow(protocolNumber: 6, port: server.tcp.port, queues: queues, own: queue)),
            rxQueue: queue, txQueue: queue)
        let table = server.context.store.replyTable
        tcpInboxes = [tcpSteering.pipeline.rings[queue]]
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
    }

    deinit {
        inbox.deallocate()
        burstHashes.deallocate()
    }

    var pipelineCounters: SteeringCounters.Snapshot {
        let t = tcpSteering.pipeline.counters.snapshot
        return udpSteering.map { t + $0.pipeline.counters.snapshot } ?? t
    }

    /// When the worker last found nothing to do (0: it has work). It keeps polling for
    /// `spinCycles` (about 40 us) before it sleeps, so a busy server does not pay a sleep
    /// and a wakeup between bursts, and an idle one does not burn its core. With as many
    /// workers as cores it does not spin: a spinning worker would take the core another
    /// worker (or the client) needs.
    var idleSince: UInt64 = 0
    lazy var spinCycles: UInt64 = server.configuration.threads < ProcessInfo.processInfo.activeProcessorCount ? 100_000 : 0

    func runOnce() {
        var work = serve(tcpSteering, inboxes: tcpInboxes, out: tcpOut, done: tcpDone, handle: handleTCP)
        if let udpSteering { work += serve(udpSteering, inboxes: udpInboxes, out: udpOut, done: udpDone, handle: handleUDP) }
        if forwarding != nil { work += serveForwarding() }
        if wakeMask != 0 {
            wakeOthers(wakeMask)
            wakeMask = 0
        }
        if work > 0 {
            idleSince = 0
            return
        }
        let now = cflex_rdtsc()
        if idleSince == 0 { idleSince = now }
        if now &- idleSince >= spinCycles {
            // Idle: compact this worker's partition (one segment at most), then sleep.
            let partition = context.store.partitions[queue % context.store.partitions.count]
            if partition.withLock({ $0.compactOne() }) { return }
            for p in placements where !p.waiting.isEmpty { partition.withLock { _ in p.refill() } }
            var waitOn: [(port: any PacketPort, queue: Int)] = [(server.tcp, queue)]
            if let udp = server.udp { waitOn.append((udp, queue)) }
            waitForAny(waitOn, descriptors: [server.wakeups.descriptor(queue)], timeoutMilliseconds: 5)
            server.wakeups.drain(queue)
        }
    }

    /// One burst from `steering`'s port: steer it, serve what our inboxes hold (steered
    /// by us or, under key steering, by other workers), free what went to the slow path
    /// (malformed frames), send the replies.
    func serve(_ steering: SteeringEmulator, inboxes: [DescriptorRing], out: PacketBatch, done: PacketBatch,
               handle: (Descriptor, UInt64) -> Void) -> Int {
        // A request's cycles count from when the pipeline sees its packet (its share of
        // the burst's steering) to when its reply is queued; the receive system call
        // before that is kernel I/O, counted apart (`receiveCycles`).
        let t0 = cflex_rdtsc()
        let n = steering.receive()
        var share: UInt64 = 0
        if n > 0 {
            let t1 = cflex_rdtsc()
            steering.steerReceived()
            share = (cflex_rdtsc() &- t1) / UInt64(n)
            receiveCycles.record((t1 &- t0) / UInt64(n))
            wakeOthers(steering.pipeline.lastDelivered)
        }
        var served = 0
        for ring in inboxes {
            let got = ring.dequeue(into: inbox, maximum: 64)
            if got > 1 { prefetchLookups(got) }
            for i in 0..<got { handle(inbox[i], share) }
            served += got
        }
        let pipeline = steering.pipeline
        let slow = pipeline.slowPathRing.dequeue(into: inbox, maximum: 64)
        for i in 0..<slow {
            // A request no log segment could take is served like any other; on an
            // Ethernet port, ARP requests for our address are answered in place.
            if inbox[i].detail == SlowPathReason.logUnavailable.rawValue { handle(inbox[i], share) }
            else if let mac = server.dpdk?.macAddress, steering.port === server.dpdk,
                    ARP.answer(inbox[i].packet.bytes, for: server.configuration.address, with: mac) {
                if out.isFull { _ = steering.port.transmit(queue: queue, out) }
                out.append(inbox[i].packet)
                arpAnswered.wrappingAdd(1, ordering: .relaxed)
            } else { finished(inbox[i].packet, done, steering.port) }
        }
        if !out.isEmpty { _ = steering.port.transmit(queue: queue, out) }
        if !done.isEmpty { steering.port.release(done) }
        return n + served
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
        guard n > 1 else { return }
        store.partitions[queue].withLock { $0.prefetch(UnsafeBufferPointer(start: burstHashes, count: n)) }
    }

    /// Queues a served request's buffer for release at the end of the burst.
    @inline(__always) func finished(_ p: Packet, _ done: PacketBatch, _ port: any PacketPort) {
        if done.isFull { port.release(done) }
        done.append(p)
    }

    /// Signals the workers whose rings the last burst fed (once per burst, not per
    /// request), so none sleeps on a request steered to it.
    func wakeOthers(_ delivered: UInt64) { server.wakeups.wake(mask: delivered, except: queue) }

    // MARK: TCP

    func handleTCP(_ d: Descriptor, _ steeringCycles: UInt64) {
        let t0 = cflex_rdtsc()
        let port = server.tcp
        defer { finished(d.packet, tcpDone, port) }
        guard let frame = try? ParsedFrame(parsing: d.packet.bytes) else { return }
        let flow = d.packet.flow
        if frame.tcpFlags & TCPHeader.Flags.fin.rawValue != 0 {
            // The peer closed, or the port closed the connection (reset, overrun): the
            // session and every reply it still held go at once.
            if sessions.removeValue(forKey: flow) != nil, context.logs(2) { context.logger.info("<\(flow) connection closed.") }
            return
        }
        let session: Session
        if let s = sessions[flow] {
            session = s
        } else if d.payload.count == 0 {
            return  // a resume notice for a connection already closed
        } else {
            session = Session()
            session.outputBudget = Session.tcpOutputBudget
            session.logID = flow
            sessions[flow] = session
            if context.logs(2) { context.logger.info("<\(flow) new auto-negotiating client connection") }
        }
        if session.endpoints == nil {
            session.endpoints = FrameBuilder.Endpoints(replyingTo: frame)
        }
        // An empty frame: the port sent a paused connection's backlog; held-back
        // requests may run again.
        session.receive(UnsafeRawBufferPointer(d.payload))
        runAndSend(session, flow: flow, since: t0, steeringCycles)
    }

    /// Runs the session's requests and sends their replies, again while requests were
    /// held back for the output budget and their replies leave: it stops when the
    /// session waits for input, for replies from other workers (nothing could be sent;
    /// their arrival runs it again), or for the port to take its backlog (the port's
    /// empty frame runs it again).
    func runAndSend(_ session: Session, flow: UInt32, since t0: UInt64, _ steeringCycles: UInt64) {
        let port = server.tcp
        while true {
            let before = session.commands
            if forwarding != nil { runForwarding(session, flow: flow) } else { ProtocolHandler.run(session, context) }
            record(commands: session.commands - before, since: t0, steeringCycles)
            let heldBack = session.heldBack, pending = session.output.count
            sendTCP(session, flow: flow)
            guard heldBack, session.output.count < pending, sessions[flow] != nil else { break }
            if !tcpOut.isEmpty { _ = port.transmit(queue: queue, tcpOut) }
            if port.isBackpressured(queue: queue, flow: flow) { break }
        }
    }

    func record(commands: Int, since t0: UInt64, _ steeringCycles: UInt64) {
        guard commands > 0 else { return }
        requests.wrappingAdd(UInt64(commands), ordering: .relaxed)
        cycles.record((cflex_rdtsc() &- t0 &+ steeringCycles) / UInt64(commands))
    }

    /// Sends the session's reply bytes that are in order (up to the first reply still
    /// out with another worker) as TCP frames on the connection; FIN last once a closing
    /// session has nothing more to send, and the session is forgotten.
    func sendTCP(_ session: Session, flow: UInt32) {
        let port = server.tcp
        guard let endpoints = session.endpoints else { return }
        let total = session.order.sendable(session.output)
        let finishing = session.closing && session.order.isEmpty
        var offset = 0
        while offset < total || (finishing && offset == total) {
            if tcpOut.isFull { _ = port.transmit(queue: queue, tcpOut) }
            guard port.allocate(count: 1, into: tcpOut) == 1 else { break }  // pool empty: counted by the port
            var p = tcpOut[tcpOut.count - 1]
            let room = Int(p.capacity) - FrameBuilder.tcpHeadersLength
            let n = min(room, total - offset)
            let last = offset + n == total
            let length = session.output.withUnsafeBytes { b in
                (try? FrameBuilder.tcp(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                       endpoints: endpoints, payload: UnsafeRawBufferPointer(rebasing: b[offset..<(offset + n)]),
                                       flags: last && finishing ? [.fin, .ack] : [.psh, .ack])) ?? 0
            }
            p.length = UInt32(length)
            p.flow = flow
            tcpOut[tcpOut.count - 1] = p
            offset += n
            if last { break }
        }
        if total == session.output.count {
            session.output.removeAll(keepingCapacity: true)
        } else {
            session.output.removeFirst(total)
        }
        session.order.sent(total)
        if finishing { sessions.removeValue(forKey: flow) }
    }

    // MARK: TCP under key steering

    /// Runs the session's complete requests: those whose key another worker owns are
    /// forwarded to it, the rest run here. A request that could meet a forwarded one's
    /// key (one running here for a foreign key, or a `local` one) waits until the
    /// session has nothing away, so every key sees the session's requests in order.
    func runForwarding(_ s: Session, flow: UInt32) {
        guard ProtocolHandler.decideDialect(s, context) else { return }
        let store = context.store
        while !s.closing && s.output.count < s.outputBudget {
            switch RequestFramer.next(s, maxLength: Self.forwardBufferSize) {
            case .incomplete:
                s.compact()
                return
            case .local:
                // It may touch any key: it waits until the session's forwarded requests
                // are answered (their replies resume it).
                guard s.order.isEmpty else { return }
                let unparsed = s.unparsed, swallow = s.swallow
                ProtocolHandler.run(s, context, through: s.consumed)
                if s.unparsed == unparsed && s.swallow == swallow { return }  // waits for more input
            case let .keyed(length, keyStart, keyLength):
                let hash = s.input.withUnsafeBytes { KVStore.hash(UnsafeRawBufferPointer(rebasing: $0[keyStart..<(keyStart + keyLength)])) }
                // The owner first: a move counts itself before it re-points the entry,
                // so seeing a new owner means seeing the move.
                let owner = store.shards.queueAcquiring(for: hash)
                // A shard moved while requests of this session were away: one for a
                // moved key may still wait at its old owner, so this one waits too.
                let moves = store.shardMoves.load(ordering: .relaxed)
                guard s.order.isEmpty || moves == s.forwardedAtMove else { return }
                s.forwardedAtMove = moves
                if owner != queue {
                    if forward(s, flow: flow, length: length, hash: hash, to: owner) {
                        s.consumed += length
                        continue
                    }
                    // No room to send it: it may run here (locked) only with nothing of
                    // this session away, where an earlier request for its key could be.
                    guard s.order.isEmpty else { return }
                }
                s.hashHint = hash
                ProtocolHandler.run(s, context, through: s.consumed)
            }
        }
        s.compact()
    }

    /// Sends the `length`-byte request at the session's `consumed` offset to `owner`.
    /// False if it must run here (no buffer, or the owner has a ring's worth in flight).
    func forward(_ s: Session, flow: UInt32, length: Int, hash: UInt32, to owner: Int) -> Bool {
        guard let forwarding, let pool = forwardPool, inFlight[owner] < forwarding.ringCapacity else { return false }
        if forwardSpares.isEmpty && pool.allocate(count: forwardSpares.capacity / 2, into: forwardSpares) == 0 { return false }
        let buffer = forwardSpares.removeLast()
        s.input.withUnsafeBytes { buffer.data.copyMemory(from: $0.baseAddress! + s.consumed, byteCount: length) }
        var b = buffer
        b.length = UInt32(length)
        let sequence = s.order.open(at: s.output.count)
        var request = ForwardedRequest(buffer: b, flow: flow, hash: hash, sequence: sequence, binary: s.dialect == .binary)
        let sent = withUnsafePointer(to: &request.descriptor) { forwarding.requests[queue][owner].enqueue($0, count: 1) }
        precondition(sent == 1, "forward ring over its in-flight limit")
        inFlight[owner] += 1
        wakeMask |= 1 << UInt64(owner)
        forwarded.wrappingAdd(1, ordering: .relaxed)
        return true
    }

    /// Serves requests other workers forwarded to us, and puts the replies to ours into
    /// their connections' output.
    func serveForwarding() -> Int {
        guard let forwarding else { return 0 }
        var work = 0
        for origin in 0..<forwarding.requests.count where origin != queue {
            let got = forwarding.requests[origin][queue].dequeue(into: inbox, maximum: 64)
            guard got > 0 else { continue }
            let t0 = cflex_rdtsc()
            var commands = 0
            for i in 0..<got {
                var request = ForwardedRequest(inbox[i])
                let s = forwardedSession
                s.reset()
                s.dialect = request.isBinary ? .binary : .text
                s.hashHint = request.hash
                s.receive(request.bytes)
                ProtocolHandler.run(s, context)
                commands += s.commands
                request.setReply(s.output)
                inbox[i] = request.descriptor
            }
            let sent = forwarding.replies[queue][origin].enqueue(inbox, count: got)
            precondition(sent == got, "reply ring over its in-flight limit")
            wakeMask |= 1 << UInt64(origin)
            forwardedServed.wrappingAdd(UInt64(got), ordering: .relaxed)
            record(commands: commands, since: t0, 0)
            work += got
        }
        for owner in 0..<forwarding.replies.count where owner != queue {
            let got = forwarding.replies[owner][queue].dequeue(into: inbox, maximum: 64)
            guard got > 0 else { continue }
            inFlight[owner] -= got
            for i in 0..<got {
                let reply = ForwardedRequest(inbox[i])
                if let s = sessions[reply.flow], s.order.fill(reply.sequence, with: reply.bytes, in: &s.output), !s.queuedForSend {
                    s.queuedForSend = true
                    toSend.append((reply.flow, s))
                }
                reply.freeSpill()
                if !forwardSpares.isFull {
                    forwardSpares.append(reply.descriptor.packet)
                } else {
                    if forwardDone.isFull { forwardPool?.release(forwardDone) }
                    forwardDone.append(reply.descriptor.packet)
                }
            }
            work += got
        }
        if !forwardDone.isEmpty { forwardPool?.release(forwardDone) }
        for (flow, s) in toSend {
            s.queuedForSend = false
            runAndSend(s, flow: flow, since: cflex_rdtsc(), 0)  // it may have waited for these replies
        }
        toSend.removeAll(keepingCapacity: true)
        if !tcpOut.isEmpty { _ = server.tcp.transmit(queue: queue, tcpOut) }
        return work
    }

    // MARK: UDP

    /// A UDP request is one datagram: the 8-byte frame header (request id, sequence,
    /// datagram count 1) and a text or binary request. As memcached, the sequence number
    /// is not looked at; a request that claims more than one datagram is counted and
    /// dropped.
    func handleUDP(_ d: Descriptor, _ steeringCycles: UInt64) {
        let t0 = cflex_rdtsc()
        guard let udp = server.udp else { return }
        if d.kind == .segmentFull {
            placementFilled(d)
            return
        }
        // The request's buffer carries the first reply datagram (no allocation, no
        // release); if it is not used for that, it is released with the burst.
        var request: Packet? = d.packet
        defer { if let r = request { finished(r, udpDone, udp) } }
        // The pipeline parsed and verified this frame and stripped it to the UDP payload.
        guard let frame = MemcachedUDPFrame(UnsafeRawBufferPointer(d.payload)), frame.isWhole else {
            badFrames.wrappingAdd(1, ordering: .relaxed)
            return
        }
        let s = udpSession
        s.reset()
        if d.kind == .logRecord, storePlaced(d, into: s) {
            record(commands: 1, since: t0, steeringCycles)
        } else {
            if d.hash != 0 { s.hashHint = d.hash }
            s.receive(frame.request)
            ProtocolHandler.run(s, context)
            record(commands: s.commands, since: t0, steeringCycles)
        }
        sendUDP(s.output, requestID: frame.requestID,
                to: FrameBuilder.Endpoints(replyingToUDP: d.packet.data, payloadOffset: Int(d.payloadOffset)), reusing: &request, port: udp)
    }

    /// Sends `output` as the reply datagrams to `reply`, the first one in `request`'s
    /// buffer (which is then used up).
    func sendUDP(_ output: [UInt8], requestID: UInt16, to reply: FrameBuilder.Endpoints, reusing request: inout Packet?,
                 port udp: any PacketPort) {
        let total = output.count
        let datagrams = MemcachedUDPFrame.datagrams(forReply: total)
        guard total > 0, datagrams <= Int(UInt16.max) else { return }
        for i in 0..<datagrams {
            if udpOut.isFull { _ = udp.transmit(queue: queue, udpOut) }
            if let r = request {
                udpOut.append(r)
                request = nil
            } else {
                guard udp.allocate(count: 1, into: udpOut) == 1 else { return }
            }
            var p = udpOut[udpOut.count - 1]
            let start = i * MemcachedUDPFrame.replyBytesPerDatagram
            let n = min(MemcachedUDPFrame.replyBytesPerDatagram, total - start)
            let body = p.data + FrameBuilder.udpHeadersLength
            MemcachedUDPFrame.writeHeader(at: body, requestID: requestID, sequence: i, count: datagrams)
            output.withUnsafeBytes { (body + MemcachedUDPFrame.headerLength).copyMemory(from: $0.baseAddress! + start, byteCount: n) }
            let length = (try? FrameBuilder.writeUDPHeaders(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                            endpoints: reply, payloadLength: MemcachedUDPFrame.headerLength + n,
                                                            checksum: false)) ?? 0
            p.length = UInt32(length)
            udpOut[udpOut.count - 1] = p
        }
    }

    // MARK: Placed SETs (dma steering)


    /// Stores a binary SET the pipeline placed in our segments, writing its reply (none
    /// for SETQ) to `s`. False if the record was not ours to store as it lies (its
    /// shard's items live in another partition, e.g. while the shard moves); the caller
    /// then serves the frame the ordinary way.
    func storePlaced(_ d: Descriptor, into s: Session) -> Bool {
        // All our placing logs belong to our partition, the one the hash must name.
        guard let record = d.record, let partition = placements.first?.partition else { return false }
        let stored: PlacementLog.StoredSet? = context.store.withPartition(d.hash) { home in
            guard home === partition else { return nil }
            for log in placements {
                if let placed = log.accept(record) { return log.storeSet(placed, hash: d.hash) }
            }
            return nil
        }
        guard let stored else { return false }
        if stored.opcode == BinaryProtocol.Op.set.rawValue {
            let h = BinaryProtocol.Header(opcode: stored.opcode, keyLength: 0, extrasLength: 0, bodyLength: 0,
                                          opaque: stored.opaque, cas: 0)
            BinaryProtocol.respond(s, h, .ok, cas: stored.cas)
        }
        s.commands += 1
        return true
    }

    /// The pipeline closed one of our placing segments: adopt it, register another.
    func placementFilled(_ d: Descriptor) {
        guard let log = placements.first(where: { $0.segments.locate(d.packet.data) != nil }) else { return }
        log.partition.withLock { _ in log.filled(slot: Int(d.packet.flow), used: Int(d.packet.length)) }
    }
}
