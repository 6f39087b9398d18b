import CFlexSys
import FlexIO
import FlexNIC
import Foundation

/// A worker's way out: `emit` (from `TupleEmitter`), then `flush` once per pass of the
/// worker's loop.
///
/// In both node designs spouts wait when their output cannot take more (flow control
/// reaches the source), while bolts keep what does not fit in a bounded backlog and go
/// on taking input: with per-machine connections a bolt that waited could be waiting on
/// a connection stalled by a tuple for its own full queue (head-of-line blocking), and a
/// bolt that goes on draining its queue keeps latency low while a burst of output leaves.
protocol TupleOutput: TupleEmitter {
    func flush(now: UInt64)
    /// Whether everything emitted has left the worker (and, when it sends itself, has
    /// been acknowledged).
    var isDrained: Bool { get }
    /// Tuples emitted since the last call.
    func takeEmitted() -> UInt64
    func close()
}

/// Tuples waiting, first in first out: an array read from `head` and emptied, keeping
/// its capacity, whenever it drains, so a steady state allocates nothing.
struct TupleBacklog {
    /// A bolt's backlog holds at most this many tuples; beyond, they are dropped and
    /// counted (at-most-once).
    static let limit = 1 << 16
    private var items: [Tuple] = []
    private var head = 0

    init(reserving n: Int = 0) { items.reserveCapacity(n) }

    var count: Int { items.count - head }
    var isEmpty: Bool { head == items.count }
    var first: Tuple { items[head] }
    mutating func append(_ t: Tuple) { items.append(t) }
    mutating func removeFirst() {
        head += 1
        if head == items.count { removeAll() }
    }
    mutating func removeAll() {
        items.removeAll(keepingCapacity: true)
        head = 0
    }
}

/// One transmit lane's DCCP senders (one per destination node) and frames: tuples are
/// framed into port buffers taken a burst at a time and sent in bursts; what the port
/// will not take yet waits in order. Owned by one thread.
final class SendLane {
    unowned let node: StormNode
    let lane: Int
    let senders: [DCCPSender]
    let frames = PacketBatch(capacity: 64)
    let spare = PacketBatch(capacity: 32)
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: Tuple.wireLength, alignment: 8)
    var publishedSlot: Int?
    var nextPublish: UInt64 = 0

    /// Senders to every node, acknowledged in registers `firstRegister ..< + nodes`.
    init(node: StormNode, lane: Int, firstRegister: Int) {
        self.node = node
        self.lane = lane
        senders = node.config.nodes.indices.map { node.makeSender(to: $0, index: firstRegister + $0) }
    }

    /// Frames `tuple`, stamped as sent `now`, as the next packet of `senders[d]` (which
    /// must have room). False only when the port has no buffer left.
    func frame(_ tuple: Tuple, to d: Int, now: UInt64) -> Bool {
        if spare.isEmpty && node.port.allocate(count: spare.capacity, into: spare) == 0 {
            transmit()
            guard node.port.allocate(count: 1, into: spare) == 1 else { return false }
        }
        var packet = spare.removeLast()
        var t = tuple
        t.sent = now
        t.encode(to: scratch)
        senders[d].send(scratch, into: &packet, now: now)
        frames.append(packet)
        return true
    }

    /// Takes in `senders[d]`'s acks and sends its window again if that is due.
    @discardableResult
    func refresh(_ d: Int, now: UInt64) -> Int {
        senders[d].refresh(now: now)
        if frames.freeSpace < 8 { transmit() }
        return senders[d].retransmit(now: now, port: node.port, into: frames)
    }

    func transmit() { node.transmit(frames, lane: lane) }

    /// Publishes the senders' counters for the node's report, at most every 100 ms.
    func publish(now: UInt64, force: Bool = false) {
        guard force || now >= nextPublish else { return }
        node.publish(senders.map(\.counters), slot: &publishedSlot)
        nextPublish = now &+ 100_000_000
    }

    /// Nothing waits for an ack, but a probe to a peer that is down (which may never
    /// come back: the node can still finish).
    var allAcknowledged: Bool { senders.allSatisfy { $0.inFlight == 0 || $0.isRefusing } }

    func close() {
        publish(now: 0, force: true)
        node.port.release(spare)
        node.port.release(frames)
        scratch.deallocate()
    }
}

/// Steered mode: the worker sends its own tuples, one DCCP connection per destination
/// node, on its own transmit queue. A spout whose window is full takes the node's
/// receive turn meanwhile (that is where acks come in) until there is room; a bolt's
/// tuples wait in a per-destination backlog that later passes send on.
final class DirectOutput: TupleOutput {
    unowned let node: StormNode
    let localIndex: Int
    let steering: SteeringLane
    let out: SendLane
    let waits: Bool
    var backlogs: [TupleBacklog]
    var emitted: UInt64 = 0

    init(node: StormNode, localIndex: Int, lane: Int, steering: SteeringLane, waits: Bool) {
        self.node = node
        self.localIndex = localIndex
        self.steering = steering
        self.waits = waits
        out = SendLane(node: node, lane: lane, firstRegister: localIndex * node.config.nodes.count)
        backlogs = node.config.nodes.map { _ in TupleBacklog() }
    }

    func emit(_ tuple: Tuple, now: UInt64) {
        guard let w = node.config.worker(tuple.destination) else {
            node.droppedUnknown.wrappingAdd(1, ordering: .relaxed)
            return
        }
        emitted &+= 1
        let d = w.node, s = out.senders[d]
        var now = now
        s.refresh(now: now)
        if !waits && (!backlogs[d].isEmpty || (!s.hasRoom && !s.isRefusing)) {
            if backlogs[d].count < TupleBacklog.limit {
                if backlogs[d].isEmpty { s.countStall() }
                backlogs[d].append(tuple)
            } else {
                node.outputOverflow.wrappingAdd(1, ordering: .relaxed)
            }
            return
        }
        if !s.hasRoom && !s.isRefusing {
            s.countStall()
            repeat {
                flush(now: now)
                waitForRoom()
                now = node.clock()
                s.refresh(now: now)
            } while !s.hasRoom && !s.isRefusing && node.running.load(ordering: .relaxed)
        }
        send(tuple, to: d, now: now)
    }

    /// Takes the node's receive turn, or sleeps until its holder brings acks.
    func waitForRoom() { node.waitForAcks(worker: localIndex, lane: out.lane, with: steering) }

    /// Sends `tuple` on `out.senders[d]` (which has room, unless its peer is down: then
    /// the tuple is dropped and counted).
    func send(_ tuple: Tuple, to d: Int, now: UInt64) {
        let s = out.senders[d]
        guard s.hasRoom && !s.isRefusing else { s.countRefused(); return }
        while out.frames.isFull {
            out.transmit()
            guard out.frames.isFull else { break }
            guard node.running.load(ordering: .relaxed) else { s.countRefused(); return }
            waitForRoom()  // the peer drains the port meanwhile
        }
        if !out.frame(tuple, to: d, now: now) { s.countRefused() }
    }

    func flush(now: UInt64) {
        for (d, s) in out.senders.enumerated() where s.inFlight > 0 || !backlogs[d].isEmpty {
            out.refresh(d, now: now)
            if s.isRefusing {
                for _ in 0..<backlogs[d].count { s.countRefused() }
                backlogs[d].removeAll()
            }
            while !backlogs[d].isEmpty && s.hasRoom {
                send(backlogs[d].first, to: d, now: now)
                backlogs[d].removeFirst()
            }
        }
        if !out.frames.isEmpty { out.transmit() }
        out.publish(now: now)
    }

    var isDrained: Bool { out.allAcknowledged && backlogs.allSatisfy(\.isEmpty) }

    func takeEmitted() -> UInt64 {
        defer { emitted = 0 }
        return emitted
    }

    func close() {
        out.close()
        steering.close(port: node.port)
    }
}

/// Demux mode, worker side: every tuple goes into the worker's ring to the
/// multiplexer thread. A spout whose ring is full waits; a bolt keeps what does not fit
/// in its backlog.
final class OutboxEmitter: TupleOutput {
    unowned let node: StormNode
    let ring: SPSCRing<Tuple>
    let waits: Bool
    var backlog = TupleBacklog()
    var emitted: UInt64 = 0
    var pending = false

    init(node: StormNode, ring: SPSCRing<Tuple>, waits: Bool) {
        self.node = node
        self.ring = ring
        self.waits = waits
    }

    func emit(_ tuple: Tuple, now: UInt64) {
        emitted &+= 1
        pending = true
        if backlog.isEmpty && ring.enqueue(tuple) { return }
        if waits {
            while !ring.enqueue(tuple) {
                node.wakeMultiplexer()
                guard node.running.load(ordering: .relaxed) else { return }
                usleep(20)
            }
        } else if backlog.count < TupleBacklog.limit {
            backlog.append(tuple)
        } else {
            node.outputOverflow.wrappingAdd(1, ordering: .relaxed)
        }
    }

    func flush(now: UInt64) {
        while !backlog.isEmpty && ring.enqueue(backlog.first) { backlog.removeFirst() }
        if pending {
            node.wakeMultiplexer()
            pending = false
        }
    }

    /// The multiplexer's drain is the node's to wait for; the backlog is the worker's.
    var isDrained: Bool { backlog.isEmpty }

    func takeEmitted() -> UInt64 {
        defer { emitted = 0 }
        return emitted
    }

    func close() {}
}

/// Demux mode's multiplexer thread (thesis fig. 5.3): takes the workers' outgoing
/// tuples, batches them per destination node, and sends a batch on that node's
/// connection once its oldest tuple has waited `mux_batch_ms` or it fills a send
/// window. While a window is full, tuples wait in the batch; while any batch is at its
/// high-water mark the workers' rings are not read, so they fill and spouts wait.
final class Multiplexer {
    unowned let node: StormNode
    let outboxes: [SPSCRing<Tuple>]
    let out: SendLane
    /// Per destination node: the batch being gathered.
    var pending: [TupleBacklog]
    let highWater: Int

    init(node: StormNode) {
        self.node = node
        outboxes = node.local.map { _ in SPSCRing<Tuple>(capacity: node.config.queueDepth) }
        out = SendLane(node: node, lane: 1, firstRegister: 0)
        highWater = 4 * node.config.sendWindow
        pending = node.config.nodes.map { _ in TupleBacklog(reserving: 4 * node.config.sendWindow + 64) }
    }

    func run() {
        let taken = UnsafeMutablePointer<Tuple>.allocate(capacity: 32)
        defer {
            taken.deallocate()
            out.close()
        }
        let batchTime = node.config.muxBatch, window = node.config.sendWindow
        let loop = CoreLoop(wakeups: node.wakeups, member: node.multiplexerWakeup)
        loop.run(while: { node.running.load(ordering: .relaxed) }) {
            var did = false
            if pending.allSatisfy({ $0.count < highWater }) {
                for box in outboxes {
                    let n = box.dequeue(into: taken, maximum: 32)
                    for k in 0..<n {
                        guard let w = node.config.worker(taken[k].destination) else {
                            node.droppedUnknown.wrappingAdd(1, ordering: .relaxed)
                            continue
                        }
                        pending[w.node].append(taken[k])
                    }
                    did = did || n > 0
                }
            }
            let now = node.clock()
            var nextDue = now &+ 1_000_000
            for (d, s) in out.senders.enumerated() {
                if out.refresh(d, now: now) > 0 { did = true }
                guard !pending[d].isEmpty else { continue }
                if s.isRefusing {
                    for _ in 0..<pending[d].count { s.countRefused() }
                    pending[d].removeAll()
                    continue
                }
                let due = pending[d].first.created &+ batchTime
                guard now >= due || pending[d].count >= window else {
                    nextDue = min(nextDue, due)
                    continue
                }
                if !s.hasRoom { s.countStall() }
                while s.hasRoom && !s.isRefusing && !pending[d].isEmpty {
                    if out.frames.isFull { out.transmit() }
                    guard !out.frames.isFull, out.frame(pending[d].first, to: d, now: now) else { break }
                    pending[d].removeFirst()
                    did = true
                }
            }
            if !out.frames.isEmpty { out.transmit() }
            out.publish(now: now)
            if node.allWorkersFinished && !node.isFinished && outboxes.allSatisfy(\.isEmpty)
                && pending.allSatisfy(\.isEmpty) && out.allAcknowledged {
                node.markFinished()
            }
            // Asleep, the multiplexer wakes for the next batch due.
            return CoreLoop.Round(work: did ? 1 : 0, sleepLimit: nextDue &- min(nextDue, now))
        }
    }
}
