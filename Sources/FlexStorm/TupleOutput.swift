import CFlexSys
import FlexIO
import FlexNIC
import Foundation

/// A worker's way out: `emit` (from `TupleEmitter`), then `flush` once per pass of the
/// worker's loop.
protocol TupleOutput: TupleEmitter {
    func flush(now: UInt64)
    /// Whether everything emitted has left the worker (and, when it sends itself, has
    /// been acknowledged).
    var isDrained: Bool { get }
    /// Tuples emitted since the last call.
    func takeEmitted() -> UInt64
    func close()
}

/// Steered mode: the worker sends its own tuples, one DCCP connection per destination
/// node, on its own transmit queue.
///
/// A spout whose window is full waits, taking the node's receive turn meanwhile (that
/// is where acks come in): the sender stalls, as flow control wants, and the source
/// slows down. A bolt does not wait: what its full window cannot take goes into a
/// per-destination backlog (at most `OutboxEmitter.backlogLimit` tuples; beyond, dropped
/// and counted) that later passes send on, so the bolt keeps taking its input while a
/// burst of output drains.
final class DirectOutput: TupleOutput {
    unowned let node: StormNode
    let lane: Int
    let localIndex: Int
    let steering: SteeringLane
    let senders: [DCCPSender]
    let waits: Bool
    var backlogs: [[Tuple]]
    var heads: [Int]
    let frames = PacketBatch(capacity: 64)
    let spare = PacketBatch(capacity: 32)
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: Tuple.wireLength, alignment: 8)
    var emitted: UInt64 = 0
    var publishedSlot: Int?
    var nextPublish: UInt64 = 0

    init(node: StormNode, localIndex: Int, lane: Int, steering: SteeringLane, waits: Bool) {
        self.node = node
        self.localIndex = localIndex
        self.lane = lane
        self.steering = steering
        self.waits = waits
        let nodes = node.config.nodes.count
        senders = (0..<nodes).map { node.makeSender(to: $0, index: localIndex * nodes + $0) }
        backlogs = senders.map { _ in [] }
        heads = senders.map { _ in 0 }
    }

    func waiting(_ d: Int) -> Int { backlogs[d].count - heads[d] }

    func emit(_ tuple: Tuple, now: UInt64) {
        guard let w = node.config.worker(tuple.destination) else {
            node.droppedUnknown.wrappingAdd(1, ordering: .relaxed)
            return
        }
        emitted &+= 1
        let d = w.node, s = senders[d]
        var now = now
        s.refresh(now: now)
        if !waits && (waiting(d) > 0 || (!s.hasRoom && !s.isDown)) {
            if waiting(d) < OutboxEmitter.backlogLimit {
                if waiting(d) == 0 { s.countStall() }
                backlogs[d].append(tuple)
            } else {
                node.outputOverflow.wrappingAdd(1, ordering: .relaxed)
            }
            return
        }
        if !s.hasRoom && !s.isDown {
            s.countStall()
            repeat {
                flush(now: now)
                node.waitForAcks(worker: localIndex, lane: lane, with: steering)
                now = node.clock()
                s.refresh(now: now)
            } while !s.hasRoom && !s.isDown && node.running.load(ordering: .relaxed)
        }
        send(tuple, on: s, now: now)
    }

    /// Frames `tuple` on `s` (which has room, unless its peer is down: then the tuple is
    /// dropped and counted).
    func send(_ tuple: Tuple, on s: DCCPSender, now: UInt64) {
        guard s.hasRoom && !s.isDown else { s.countRefused(); return }
        while frames.isFull {
            node.transmit(frames, lane: lane)
            guard frames.isFull else { break }
            guard node.running.load(ordering: .relaxed) else { s.countRefused(); return }
            node.waitForAcks(worker: localIndex, lane: lane, with: steering)  // the peer drains meanwhile
        }
        guard var packet = node.takeBuffer(from: spare, sending: frames, lane: lane) else { s.countRefused(); return }
        var t = tuple
        t.sent = now
        t.encode(to: scratch)
        s.send(scratch, into: &packet, now: now)
        frames.append(packet)
    }

    func flush(now: UInt64) {
        for (d, s) in senders.enumerated() where s.inFlight > 0 || waiting(d) > 0 {
            s.refresh(now: now)
            if frames.freeSpace < 8 { node.transmit(frames, lane: lane) }
            _ = s.retransmit(now: now, port: node.port, into: frames)
            if s.isDown {
                for _ in 0..<waiting(d) { s.countRefused() }
                heads[d] = backlogs[d].count
            }
            while waiting(d) > 0 && s.hasRoom {
                send(backlogs[d][heads[d]], on: s, now: now)
                heads[d] += 1
            }
            if waiting(d) == 0 && heads[d] > 0 {
                backlogs[d].removeAll(keepingCapacity: true)
                heads[d] = 0
            }
        }
        if !frames.isEmpty { node.transmit(frames, lane: lane) }
        if now >= nextPublish {
            node.publish(senders.map(\.counters), slot: &publishedSlot)
            nextPublish = now &+ 100_000_000
        }
    }

    var isDrained: Bool { senders.indices.allSatisfy { senders[$0].inFlight == 0 && waiting($0) == 0 } }

    func takeEmitted() -> UInt64 {
        defer { emitted = 0 }
        return emitted
    }

    func close() {
        node.publish(senders.map(\.counters), slot: &publishedSlot)
        node.port.release(spare)
        node.port.release(frames)
        steering.close(port: node.port)
        scratch.deallocate()
    }
}

/// Demux mode, worker side: every tuple goes into the worker's ring to the
/// multiplexer thread.
///
/// A spout whose ring is full waits (flow control reaches the source). A bolt never
/// waits: its per-machine connection may be stalled by a tuple for the bolt's own full
/// input queue (head-of-line blocking), so waiting could deadlock. It keeps what does
/// not fit in a backlog of at most `backlogLimit` tuples and drops (and counts) beyond
/// that: at-most-once under overload.
final class OutboxEmitter: TupleOutput {
    unowned let node: StormNode
    let ring: SPSCRing<Tuple>
    let waits: Bool
    var backlog: [Tuple] = []
    var backlogHead = 0
    static let backlogLimit = 1 << 16
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
        if backlogHead == backlog.count && ring.enqueue(tuple) { return }
        if waits {
            while !ring.enqueue(tuple) {
                _ = cflex_eventfd_signal(node.muxWakeup)
                guard node.running.load(ordering: .relaxed) else { return }
                usleep(20)
            }
        } else if backlog.count - backlogHead < Self.backlogLimit {
            backlog.append(tuple)
        } else {
            node.outputOverflow.wrappingAdd(1, ordering: .relaxed)
        }
    }

    func flush(now: UInt64) {
        while backlogHead < backlog.count && ring.enqueue(backlog[backlogHead]) { backlogHead += 1 }
        if backlogHead == backlog.count && backlogHead > 0 {
            backlog.removeAll(keepingCapacity: true)
            backlogHead = 0
        }
        if pending {
            _ = cflex_eventfd_signal(node.muxWakeup)
            pending = false
        }
    }

    /// The multiplexer's drain is the node's to wait for; the backlog is the worker's.
    var isDrained: Bool { backlogHead == backlog.count }

    func takeEmitted() -> UInt64 {
        defer { emitted = 0 }
        return emitted
    }

    func close() {}
}

/// Demux mode's multiplexer thread (thesis fig. 5.3): takes the workers' outgoing
/// tuples, batches them per destination node, and sends a batch on that node's
/// connection once its oldest tuple has waited `mux_batch_ms` or it fills a send
/// window. While a window is full, tuples wait in the batch; when the batches are
/// full, the workers' rings fill and the workers wait.
final class Multiplexer {
    unowned let node: StormNode
    let outboxes: [SPSCRing<Tuple>]
    let senders: [DCCPSender]
    /// Per destination node: tuples waiting, from `heads[d]` on.
    var pending: [[Tuple]]
    var heads: [Int]
    let highWater: Int
    let frames = PacketBatch(capacity: 64)
    let spare = PacketBatch(capacity: 32)
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: Tuple.wireLength, alignment: 8)
    var publishedSlot: Int?

    init(node: StormNode) {
        self.node = node
        outboxes = node.local.map { _ in SPSCRing<Tuple>(capacity: node.config.queueDepth) }
        senders = (0..<node.config.nodes.count).map { node.makeSender(to: $0, index: $0) }
        highWater = 4 * node.config.sendWindow
        pending = senders.map { _ in
            var a: [Tuple] = []
            a.reserveCapacity(4 * node.config.sendWindow + 64)
            return a
        }
        heads = senders.map { _ in 0 }
    }

    func waiting(_ d: Int) -> Int { pending[d].count - heads[d] }

    func run() {
        let taken = UnsafeMutablePointer<Tuple>.allocate(capacity: 32)
        defer {
            taken.deallocate()
            scratch.deallocate()
            node.publish(senders.map(\.counters), slot: &publishedSlot)
            node.port.release(spare)
            node.port.release(frames)
        }
        var nextPublish: UInt64 = 0
        let batchTime = node.config.muxBatch
        let lane = 1
        while node.running.load(ordering: .relaxed) {
            var now = node.clock()
            var did = false
            // Gather: stop taking while any batch is at its high-water mark.
            if (0..<senders.count).allSatisfy({ waiting($0) < highWater }) {
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
            now = node.clock()
            var nextDue = now &+ 1_000_000
            for d in 0..<senders.count {
                let s = senders[d]
                s.refresh(now: now)
                if frames.freeSpace < 8 { node.transmit(frames, lane: lane) }
                if s.retransmit(now: now, port: node.port, into: frames) > 0 { did = true }
                guard waiting(d) > 0 else { continue }
                if s.isDown {
                    for _ in 0..<waiting(d) { s.countRefused() }
                    pending[d].removeAll(keepingCapacity: true)
                    heads[d] = 0
                    continue
                }
                let due = pending[d][heads[d]].created &+ batchTime
                guard now >= due || waiting(d) >= node.config.sendWindow else {
                    nextDue = min(nextDue, due)
                    continue
                }
                if !s.hasRoom { s.countStall() }
                while s.hasRoom && waiting(d) > 0 {
                    if frames.isFull { node.transmit(frames, lane: lane) }
                    guard !frames.isFull, var packet = node.takeBuffer(from: spare, sending: frames, lane: lane) else { break }
                    var t = pending[d][heads[d]]
                    heads[d] += 1
                    t.sent = now
                    t.encode(to: scratch)
                    s.send(scratch, into: &packet, now: now)
                    frames.append(packet)
                    did = true
                }
                if waiting(d) == 0 {
                    pending[d].removeAll(keepingCapacity: true)
                    heads[d] = 0
                }
            }
            if !frames.isEmpty { node.transmit(frames, lane: lane) }
            if now >= nextPublish {
                node.publish(senders.map(\.counters), slot: &publishedSlot)
                nextPublish = now &+ 100_000_000
            }
            if node.allWorkersFinished && !node.isFinished && outboxes.allSatisfy(\.isEmpty)
                && (0..<senders.count).allSatisfy({ waiting($0) == 0 && senders[$0].inFlight == 0 }) {
                node.markFinished()
            }
            if !did {
                let ms = Int(min(1, (nextDue &- min(nextDue, now)) / 1_000_000))
                if ms > 0 { waitForAny([], descriptors: [node.muxWakeup], timeoutMilliseconds: ms) } else { sched_yield() }
                _ = cflex_eventfd_drain(node.muxWakeup)
            }
        }
    }

}
