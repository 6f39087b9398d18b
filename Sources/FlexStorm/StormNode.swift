import CFlexSys
import FlexIO
import FlexNIC
import FlexWire
import Foundation
import Synchronization

/// One FlexStorm node: the workers the config places here, their input queues, the
/// node's port, and one of two designs for moving tuples (thesis 5.2, fig. 5.3):
///
/// - `demux`: per-machine connections. A demultiplexer thread receives every packet,
///   runs the receive pipeline (`DCCPReceiver`'s steering program: checksum, in-order
///   delivery into the worker's queue, ack) and wakes the workers it fed. Workers hand every outgoing
///   tuple to a multiplexer thread, which batches them per destination node for up to
///   `mux_batch_ms` (or a send window's worth) and sends them on one DCCP connection
///   per node.
/// - `steered`: no mux or demux threads. Each worker, when it has nothing else to do
///   or waits for acks, takes the node's receive turn (a try-lock per burst, never per
///   packet) and runs the same pipeline inline, placing tuples straight into whichever
///   worker's queue they are for; workers send their own tuples directly, on their own
///   DCCP connections and transmit queues.
///
/// Flow control is end to end in both: a full input queue withholds acks, the sender's
/// window fills, the sender stalls, and the component that emits waits; nothing is lost
/// inside a node. Tuples are dropped (and counted) only for a destination that is down
/// or a worker id no node runs.
public final class StormNode: @unchecked Sendable {
    public enum Mode: String, CaseIterable, Sendable {
        case demux, steered
    }

    public let config: StormConfig
    public let nodeIndex: Int
    public let mode: Mode
    public let port: any PacketPort
    let udpEncapsulated: Bool
    let receiver: DCCPReceiver
    let acks: AckBoard
    /// The workers this node runs, in local index order (their input queue, wakeup and
    /// stats have the same index).
    public let local: [StormConfig.Worker]
    public let stats: [WorkerStats]
    let inboxes: [SPSCRing<Tuple>]
    /// Ethernet ports do not hand a node its own frames back (the kernel does, for UDP):
    /// frames for this node go round in software, one ring per transmit lane, drained
    /// by the receive turn like another rx queue.
    let loopbacks: [SPSCRing<Packet>]
    let address: IPv4Address
    /// The port is polled (DPDK): nothing to sleep on, and a full transmit ring frees
    /// as the peer reads it.
    let portIsPolled: Bool
    /// The workers' wakeups, then the multiplexer's.
    let wakeups: WakeSet
    /// Each worker's loop (its thread's only).
    let workerLoops: [CoreLoop]
    let components: [Component]
    var multiplexer: Multiplexer?
    let rxLock = Atomic<Bool>(false)
    let running = Atomic<Bool>(false)
    let finishedWorkers = Atomic<Int>(0)
    let exited = DispatchSemaphore(value: 0)
    var threadCount = 0
    var startedAt: UInt64 = 0
    let threadBody: @Sendable (() -> Void) -> Void
    let finishedAt = Atomic<UInt64>(0)
    @inline(__always) func clock() -> UInt64 { monotonicNanoseconds() }

    /// How the node reaches the others.
    public enum Transport {
        /// Kernel UDP sockets on the node's address and port, DCCP inside UDP (RFC 6773).
        case kernel
        /// An Ethernet port (DPDK) opened with `ethernetQueues(mode:config:)` queues:
        /// DCCP directly in IPv4 (protocol 33). `threadBody` runs each of the node's
        /// threads (DPDK: registered as an lcore, so mbufs come from per-thread caches).
        case ethernet(any PacketPort, threadBody: @Sendable (() -> Void) -> Void = { $0() })
    }

    /// Transmit queues a node needs: one per worker when steered, demux thread and
    /// multiplexer otherwise.
    public static func queues(mode: Mode, config: StormConfig, node: Int) -> Int {
        mode == .demux ? 2 : max(1, config.workers.filter { $0.node == node }.count)
    }

    /// Queue pairs every node opens on an Ethernet port: the most any node needs, so
    /// the two ends of a point-to-point link (memif) agree and every queue has a reader.
    public static func ethernetQueues(mode: Mode, config: StormConfig) -> Int {
        config.nodes.indices.map { queues(mode: mode, config: config, node: $0) }.max() ?? 1
    }

    /// - Parameters:
    ///   - trace: the whole stream; each spout takes its share.
    ///   - onRanking: called on the total ranker's thread with each ranking it makes.
    public init(config: StormConfig, node name: String, mode: Mode, trace: [UserName], transport: Transport = .kernel,
                onRanking: @escaping (Ranking) -> Void = { _ in }) throws {
        guard let index = config.nodeIndex(named: name) else {
            throw StormConfigError("no node named \"\(name)\" in the config (\(config.nodes.map(\.name).joined(separator: ", ")))")
        }
        self.config = config
        nodeIndex = index
        self.mode = mode
        let me = config.nodes[index]
        local = config.workers.filter { $0.node == index }
        let queueCount = Self.queues(mode: mode, config: config, node: index)
        switch transport {
        case .kernel:
            // Every connection into the node may have a window in flight at once; the
            // kernel must hold them all (a datagram's buffer takes about 1 KiB there).
            let inbound = config.nodes.count * max(config.workers.count, 1) * config.sendWindow
            port = try KernelUDPPort(address: me.address, port: me.port, queues: queueCount, bufferCount: 16_384,
                                     bufferSize: 256, receiveBufferBytes: max(1 << 20, inbound * 1_024))
            udpEncapsulated = true
            threadBody = { $0() }
        case .ethernet(let p, let body):
            threadBody = body
            guard p.txQueueCount >= queueCount else {
                throw PortError("\(p.name) has \(p.txQueueCount) transmit queues; a \(mode) node with \(local.count) workers needs \(queueCount)")
            }
            port = p
            udpEncapsulated = false
        }
        inboxes = local.map { _ in SPSCRing<Tuple>(capacity: config.queueDepth) }
        loopbacks = udpEncapsulated ? [] : (0..<queueCount).map { _ in SPSCRing<Packet>(capacity: 1024) }
        address = me.address
        portIsPolled = port.readinessDescriptor(queue: 0) == nil
        var targets = [Int16](repeating: -1, count: config.workers.count + 1)
        for (i, w) in local.enumerated() { targets[Int(w.id)] = Int16(i) }
        // Senders' DCCP ports sit next to the node's service port.
        let senderCount = mode == .demux ? config.nodes.count : max(1, local.count) * config.nodes.count
        let base = Int(me.port) + 1 + senderCount <= 65_536 ? me.port + 1 : me.port - UInt16(senderCount)
        acks = AckBoard(basePort: base, count: senderCount)
        receiver = DCCPReceiver(port: me.port, udpEncapsulated: udpEncapsulated, queues: inboxes, targets: targets,
                                acks: acks, connections: max(256, 4 * config.workers.count), parkCapacity: config.sendWindow,
                                clock: { monotonicNanoseconds() })
        stats = local.map { WorkerStats(id: $0.id, role: $0.role) }
        wakeups = try WakeSet(count: local.count + 1)
        // Steered, an idle worker also watches the port, one at a time (the others
        // sleep until the receive turn's holder feeds or acks them).
        let portWatch = CoreLoop.SharedWatch()
        workerLoops = local.indices.map { [port, wakeups] i in
            CoreLoop(ports: mode == .steered ? (0..<port.rxQueueCount).map { (port, $0) } : [], wakeups: wakeups, member: i,
                     shared: mode == .steered ? portWatch : nil)
        }
        let spouts = config.workers(.spout).count
        components = local.map { w -> Component in
            switch w.role {
            case .spout: return SpoutComponent(id: w.id, replica: w.replica, spouts: spouts, trace: trace, config: config)
            case .counter: return CounterComponent(id: w.id, config: config)
            case .ranker: return RankerComponent(id: w.id, config: config)
            case .total: return TotalRankerComponent(id: w.id, config: config, report: onRanking)
            }
        }
    }


    /// The multiplexer's member of `wakeups` (after the workers').
    var multiplexerWakeup: Int { local.count }
    func wakeMultiplexer() { wakeups.wake(multiplexerWakeup) }

    /// A sender from this node to node `destination`, acknowledged in register `index`.
    func makeSender(to destination: Int, index: Int) -> DCCPSender {
        let me = config.nodes[nodeIndex], peer = config.nodes[destination]
        var settings = DCCPSender.Settings()
        settings.window = config.sendWindow
        settings.downAfter = UInt64(config.peerDownMilliseconds) * 1_000_000
        let endpoints = FrameBuilder.Endpoints(source: me.address, destination: peer.address,
                                               sourcePort: me.port, destinationPort: peer.port)
        return DCCPSender(route: .init(endpoints: endpoints, dccpSourcePort: acks.port(of: index),
                                       dccpDestinationPort: peer.port, udpEncapsulated: udpEncapsulated),
                          payloadLength: Tuple.wireLength, acks: acks, ackIndex: index, settings: settings)
    }

    // MARK: Running

    /// Starts the node's threads. Workers with nothing to do sleep.
    public func start() {
        guard !running.exchange(true, ordering: .acquiringAndReleasing) else { return }
        startedAt = clock()
        if mode == .demux { multiplexer = Multiplexer(node: self) }
        for i in 0..<local.count { spawn("storm-\(local[i].role)-\(local[i].id)") { self.runWorker(i) } }
        if let mux = multiplexer {
            spawn("storm-mux") { mux.run() }
            spawn("storm-demux") { self.runDemultiplexer() }
        }
    }

    func spawn(_ name: String, _ body: @escaping () -> Void) {
        threadCount += 1
        let t = Thread { self.threadBody(body); self.exited.signal() }
        t.name = name
        t.start()
    }

    /// Whether every local worker has sent its last tuple and had it acknowledged.
    public var isFinished: Bool { finishedAt.load(ordering: .acquiring) != 0 }

    /// Waits until the node is finished or `seconds` pass; returns whether it finished.
    public func waitUntilFinished(seconds: Double) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !isFinished && Date() < deadline { usleep(2_000) }
        return isFinished
    }

    /// Stops every thread and waits for them.
    public func stop() {
        guard running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        wakeups.wakeAll()
        for _ in 0..<threadCount { exited.wait() }
        threadCount = 0
    }

    func workerFinished() {
        let n = finishedWorkers.add(1, ordering: .acquiringAndReleasing).newValue
        if n == local.count {
            if mode == .demux { wakeMultiplexer() } else { markFinished() }
        }
    }

    func markFinished() { finishedAt.store(clock(), ordering: .releasing) }

    var allWorkersFinished: Bool { finishedWorkers.load(ordering: .acquiring) == local.count }

    func runWorker(_ i: Int) {
        let component = components[i], inbox = inboxes[i], stat = stats[i]
        let lane = mode == .steered ? i : 0
        let steering = SteeringLane()
        let output: TupleOutput = mode == .steered
            ? DirectOutput(node: self, localIndex: i, lane: lane, steering: steering, waits: local[i].role == .spout)
            : OutboxEmitter(node: self, ring: multiplexerOutbox(i), waits: local[i].role == .spout)
        let tuples = UnsafeMutablePointer<Tuple>.allocate(capacity: 32)
        defer { tuples.deallocate(); output.close() }
        var finished = false
        workerLoops[i].run(while: { running.load(ordering: .relaxed) }) {
            var did = mode == .steered && steer(lane: lane, with: steering, worker: i)
            let n = inbox.dequeue(into: tuples, maximum: 32)
            if n > 0 {
                did = true
                var burst = WorkerStats.Burst()
                var now = clock()
                for k in 0..<n {
                    burst.add(tuples[k], takenAt: now)
                    component.process(tuples[k], now: now, out: output)
                    let after = clock()
                    burst.processing &+= after &- now
                    now = after
                }
                stat.add(burst, at: now)
            }
            let now = clock()
            if component.tick(now: now, out: output) { did = true }
            output.flush(now: now)
            stat.countEmitted(output.takeEmitted())
            if !finished && component.isFinished && output.isDrained {
                finished = true
                workerFinished()
            }
            if finished && (mode == .demux || allWorkersFinished) && inbox.isEmpty { return .stop }
            if did { return CoreLoop.Round(work: 1) }
            // A paced spout sleeps until its next tuple is due.
            let deadline = component.nextDeadline(now: now)
            return CoreLoop.Round(work: 0, sleepLimit: output.isDrained ? deadline &- min(now, deadline) : .max)
        }
    }

    /// The port's rx queues, for the loops that watch them while idle.
    var receiveQueues: [(port: any PacketPort, queue: Int)] { (0..<port.rxQueueCount).map { (port, $0) } }

    func runDemultiplexer() {
        let steering = SteeringLane()
        let loop = CoreLoop(ports: receiveQueues)
        loop.run(while: { running.load(ordering: .relaxed) }) {
            // Parked tuples may move on as soon as the workers drain their queues.
            steer(lane: 0, with: steering, worker: nil) ? CoreLoop.Round(work: 1)
                : CoreLoop.Round(work: 0, sleepLimit: receiver.hasParked ? 0 : .max)
        }
        steering.close(port: port)
    }

    /// The receive turn: if no other thread has it, receives one burst from each rx
    /// queue, runs the receive pipeline over it, sends the acks on `lane` and wakes
    /// the workers it fed. Returns whether it handled any packet.
    func steer(lane: Int, with s: SteeringLane, worker: Int?) -> Bool {
        guard rxLock.compareExchange(expected: false, desired: true, ordering: .acquiring).exchanged else { return false }
        var handled = 0
        var fed: UInt64 = 0
        var tookAcks = false
        for q in 0..<(port.rxQueueCount + loopbacks.count) {
            let n = q < port.rxQueueCount ? port.receive(queue: q, into: s.received)
                : s.received.take(from: loopbacks[q - port.rxQueueCount])
            guard n > 0 else { continue }
            handled += n
            receiver.process(s.received, port: port, replies: s.replies, release: s.release)
            fed |= receiver.lastDelivered
            tookAcks = tookAcks || receiver.lastTookAcks
            transmit(s.replies, lane: lane)
        }
        if handled == 0 && receiver.hasParked {
            // Nothing new, but parked tuples may move on now that queues drained.
            receiver.process(s.received, port: port, replies: s.replies, release: s.release)
            fed |= receiver.lastDelivered
            transmit(s.replies, lane: lane)
        }
        rxLock.store(false, ordering: .releasing)
        if tookAcks {
            // Senders waiting for window room: the workers that stalled, or the mux.
            if mode == .demux { wakeMultiplexer() }
            fed |= stalledWorkers.load(ordering: .acquiring)
        }
        wakeups.wake(mask: fed, except: worker)
        return handled > 0
    }

    /// Sends the frames of `batch` on `lane`, trying a few times. What the port will not
    /// take now stays in `batch`, in order, for the caller's next try: dropping it would
    /// leave a gap that costs its sender a go-back-N round.
    func transmit(_ batch: PacketBatch, lane: Int) {
        if !loopbacks.isEmpty { loopBack(batch, lane: lane) }
        var stuck = 0
        // A polled port's ring frees as the peer reads it: worth more tries than a socket.
        let patience = portIsPolled ? 64 : 4
        while !batch.isEmpty && stuck < patience {
            if port.transmit(queue: lane, batch) == 0 { stuck += 1 }
        }
        if !batch.isEmpty { transmitBusy.wrappingAdd(1, ordering: .relaxed) }
    }
    /// Times a transmit queue stayed full through every try.
    let transmitBusy = Atomic<UInt64>(0)
    /// Frames for this node that found its loopback ring full (sent again by their
    /// senders).
    let loopbackOverflow = Atomic<UInt64>(0)
    /// Bit i: worker i waits for acks (its window is full).
    let stalledWorkers = Atomic<UInt64>(0)

    /// Worker `i`'s sender has no room: take the receive turn if it is free (acks come
    /// in there), else sleep until the turn's holder wakes us on an ack (or 1 ms).
    func waitForAcks(worker i: Int, lane: Int, with s: SteeringLane) {
        if steer(lane: lane, with: s, worker: i) { return }
        let bit: UInt64 = i < 64 ? 1 << UInt64(i) : 0
        stalledWorkers.bitwiseOr(bit, ordering: .acquiringAndReleasing)
        if !steer(lane: lane, with: s, worker: i) { workerLoops[i].sleep(atMost: .max) }
        stalledWorkers.bitwiseAnd(~bit, ordering: .acquiringAndReleasing)
    }

    /// Moves the frames of `batch` addressed to this node onto `lane`'s loopback ring.
    func loopBack(_ batch: PacketBatch, lane: Int) {
        var kept = 0
        for i in 0..<batch.count {
            let p = batch[i]
            let toSelf = p.length >= 34 && UnsafeRawPointer(p.data).loadBE32(at: 30) == address.value
            if !toSelf {
                batch[kept] = p
                kept += 1
            } else if !loopbacks[lane].enqueue(p) {
                loopbackOverflow.wrappingAdd(1, ordering: .relaxed)
                port.release(p)
            }
        }
        batch.count = kept
    }

    func multiplexerOutbox(_ i: Int) -> SPSCRing<Tuple> { multiplexer!.outboxes[i] }

    // MARK: Reporting

    /// What the node did since it started.
    public func report() -> NodeReport {
        let end = isFinished ? finishedAt.load(ordering: .acquiring) : clock()
        var senders = DCCPSender.Counters()
        for c in senderCounters.withLock({ $0 }) {
            senders.sent += c.sent
            senders.retransmitted += c.retransmitted
            senders.refusedWhileDown += c.refusedWhileDown
            senders.timesDown += c.timesDown
            senders.lostInFlight += c.lostInFlight
            senders.epochs += c.epochs
            senders.windowStalls += c.windowStalls
            senders.fastRetransmits += c.fastRetransmits
        }
        return NodeReport(node: config.nodes[nodeIndex].name, mode: mode, seconds: Double(end &- startedAt) / 1e9,
                          workers: stats.map(\.snapshot), receive: receiver.counters.snapshot, senders: senders,
                          unknownDestination: droppedUnknown.load(ordering: .relaxed), outputOverflow: outputOverflow.load(ordering: .relaxed),
                          loopbackOverflow: loopbackOverflow.load(ordering: .relaxed), transmitBusy: transmitBusy.load(ordering: .relaxed),
                          portStatistics: port.statistics)
    }

    /// Sender counters, published by each sending thread as it goes.
    let senderCounters = Mutex<[DCCPSender.Counters]>([])
    let droppedUnknown = Atomic<UInt64>(0)
    /// Tuples a bolt dropped because its output backlog was full.
    let outputOverflow = Atomic<UInt64>(0)

    func publish(_ counters: [DCCPSender.Counters], slot: inout Int?) {
        senderCounters.withLock { all in
            if slot == nil { slot = all.count; all.append(contentsOf: counters) }
            for (k, c) in counters.enumerated() { all[slot! + k] = c }
        }
    }
}

/// A sending thread's receive-turn buffers.
final class SteeringLane {
    let received = PacketBatch(capacity: 32)
    let replies = PacketBatch(capacity: 32)
    let release = PacketBatch(capacity: 32)

    func close(port: any PacketPort) {
        port.release(received)
        port.release(replies)
        port.release(release)
    }
}

extension PacketBatch {
    /// Appends what `ring` holds, as far as there is room; returns how many.
    func take(from ring: SPSCRing<Packet>) -> Int {
        let n = ring.dequeue(into: packets + count, maximum: freeSpace)
        count += n
        return n
    }
}
