import FlexIO
import FlexWire
import Synchronization

/// One of the application's queues that the `place` action fills with fixed-size
/// slots decoded from packets' payloads (the thesis's custom queue format: the ring's
/// per-slot flag marks a taken position, thesis 5.2.1). The application conforms its
/// concrete queue type (FlexStorm: `SPSCRing<Tuple>`), so decoding and enqueueing run
/// as specialized code.
public protocol PlacementQueue: AnyObject {
    /// Bytes of one decoded slot (at most `QueuePlacement.maximumSlotSize`).
    var slotSize: Int { get }
    var isFull: Bool { get }
    /// Decodes `length` payload bytes into a slot, stamping the time it reached the
    /// queue (`arrival`, nanoseconds), and enqueues it; if the queue is full, leaves
    /// the decoded slot at `overflow` instead (`slotSize` bytes).
    func place(_ payload: UnsafeRawPointer, length: Int, arrival: UInt64, overflow: UnsafeMutableRawPointer) -> SlotOutcome
    /// Decodes into the slot at `slot` without enqueueing; false if malformed.
    func decode(_ payload: UnsafeRawPointer, length: Int, arrival: UInt64, into slot: UnsafeMutableRawPointer) -> Bool
    /// Enqueues the decoded slot at `slot`; false if the queue is full.
    func enqueue(decoded slot: UnsafeRawPointer) -> Bool
}

/// What `PlacementQueue.place` did.
public enum SlotOutcome: Sendable {
    case enqueued, full, undecodable
}

/// The outcome of the `place` action, which the program's next stages match
/// (`MatchField.placement`).
public enum Placement: UInt8, Sendable {
    /// Placed in its queue, or nothing to place (an unknown target or an undecodable
    /// payload, counted): acknowledge it now.
    case placed = 1
    /// Its queue is full, or earlier packets of its flow wait: kept in the flow's park,
    /// to be placed and acknowledged once there is room. Do not acknowledge it now.
    case withheld = 2
    /// The flow's park is full: dropped without an acknowledgement, for the sender to
    /// send again.
    case refused = 3
}

/// The element behind the pipeline's `place` action ("enqueue or withhold"): decodes a
/// DCCP packet's payload into a slot of the queue its target id names, or, when that
/// queue is full, parks the slot, so the ack is withheld and the sender's window, not
/// a drop, holds the flow back (thesis 5.2.1, flow control).
///
/// - A flow's park holds at most `parkCapacity` packets, in order; everything of that
///   flow behind a parked packet waits there too, so nothing overtakes.
/// - Unknown targets and undecodable payloads are placed as nothing (counted) and
///   acknowledged in turn: a bad tuple never stalls its flow (at-most-once).
///
/// Contract, as for every element: only the thread that runs the pipeline calls it (so
/// it is the producer of every queue it fills); `beginBurst` runs once per burst before
/// the burst's packets; nothing per packet locks, and only a flow's first wait
/// allocates (its park: `parkCapacity` slots and an ack template, kept for the flow's
/// life, at most one per tracked flow).
public final class QueuePlacement: @unchecked Sendable {
    public static let maximumSlotSize = 256
    public let queues: [any PlacementQueue]
    /// Target id -> queue index, or -1.
    let targets: [Int16]
    let clock: @Sendable () -> UInt64
    let parkCapacity: Int
    /// The flow register that holds the last acknowledged sequence number.
    public let acknowledgedRegister: Int
    var parks: [Park?] = []
    /// Flows whose park is not empty.
    var parked: [Int] = []
    /// Where a payload is decoded before it is enqueued or parked.
    let scratch = UnsafeMutableRawPointer.allocate(byteCount: QueuePlacement.maximumSlotSize, alignment: 16)
    var now: UInt64 = 0
    /// Bit q is set if the last burst placed into queue q (q < 64), so the caller can
    /// wake those consumers.
    public private(set) var lastDelivered: UInt64 = 0
    /// Whether packets wait in parks: run a burst (an empty one, if need be) on every
    /// receive turn so they move on as queues drain.
    public var hasWithheld: Bool { !parked.isEmpty }

    public let delivered = Atomic<UInt64>(0)
    public let withheld = Atomic<UInt64>(0)
    public let unknownTarget = Atomic<UInt64>(0)
    public let undecodable = Atomic<UInt64>(0)
    /// Acknowledgements sent when parked packets moved on.
    public let acksSent = Atomic<UInt64>(0)

    /// - Parameters:
    ///   - targets: for each target id, the index of its queue in `queues` (-1: none).
    ///   - parkCapacity: packets a flow may have waiting (the senders' window is a
    ///     good size).
    ///   - clock: nanoseconds, for the slots' arrival stamps.
    public init(queues: [any PlacementQueue], targets: [Int16], parkCapacity: Int = 128, acknowledgedRegister: Int,
                clock: @escaping @Sendable () -> UInt64) {
        precondition(queues.count <= 64, "at most 64 queues")
        precondition(targets.allSatisfy { $0 < queues.count }, "target table names a queue that does not exist")
        precondition(queues.allSatisfy { $0.slotSize <= Self.maximumSlotSize }, "a queue's slots are larger than \(Self.maximumSlotSize) bytes")
        self.queues = queues
        self.targets = targets
        self.parkCapacity = max(1, parkCapacity)
        self.acknowledgedRegister = acknowledgedRegister
        self.clock = clock
    }

    deinit { scratch.deallocate() }

    @inline(__always) static func bump(_ a: borrowing Atomic<UInt64>) { a.store(a.load(ordering: .relaxed) &+ 1, ordering: .relaxed) }

    /// Sizes the parks for the pipeline's flow registers (once, when it is built).
    func prepare(flows: FlowRegisters) {
        parks = [Park?](repeating: nil, count: flows.rows)
        now = clock()
    }

    /// Moves withheld packets on into queues that have room, in each flow's order, and
    /// writes their acknowledgements into `replies` (buffers from `port`); sets the
    /// flows' acknowledged register.
    func beginBurst(flows: FlowRegisters, port: some PacketPort, replies: PacketBatch) {
        lastDelivered = 0
        now = clock()
        guard !parked.isEmpty else { return }
        var i = 0
        while i < parked.count {
            let c = parked[i]
            let park = parks[c]!
            var last: UInt64 = 0
            while park.count > 0 {
                let q = park.queueAtHead
                if q >= 0 {
                    guard queues[q].enqueue(decoded: park.slotAtHead) else { break }
                    Self.bump(delivered)
                    if q < 64 { lastDelivered |= 1 << UInt64(q) }
                }
                last = park.sequenceAtHead
                park.removeHead()
            }
            if last > 0 {
                flows[c, acknowledgedRegister] = last
                if !replies.isFull, park.writeAck(last, port: port, into: replies) { Self.bump(acksSent) }
            }
            if park.count == 0 {
                parked.swapAt(i, parked.count - 1)
                parked.removeLast()
            } else {
                i += 1
            }
        }
    }

    /// Places one in-order packet of flow `flow`, its target a big-endian 16-bit id at
    /// `targetAt` in the DCCP payload.
    @inline(__always)
    func place(_ p: Packet, _ f: ParsedFrame, dccp: DCCPView, targetAt: Int, flow: Int) -> Placement {
        let payload = dccp.payload
        var q = -1
        if targetAt &+ 2 <= payload.count {
            let target = Int(payload.baseAddress.unsafelyUnwrapped.loadBE16(at: targetAt))
            q = target < targets.count ? Int(targets[target]) : -1
            if q < 0 { Self.bump(unknownTarget) }
        } else {
            Self.bump(undecodable)
        }
        let waiting = parks[flow].map { $0.count > 0 } ?? false
        if q >= 0 && !waiting {
            // The common case: decoded straight into its queue.
            switch queues[q].place(payload.baseAddress.unsafelyUnwrapped, length: payload.count, arrival: now, overflow: scratch) {
            case .enqueued:
                Self.bump(delivered)
                if q < 64 { lastDelivered |= 1 << UInt64(q) }
                return .placed
            case .undecodable:
                Self.bump(undecodable)
                return .placed
            case .full: break  // decoded into `scratch`: park it
            }
        } else if q >= 0 && !queues[q].decode(payload.baseAddress.unsafelyUnwrapped, length: payload.count, arrival: now, into: scratch) {
            Self.bump(undecodable)
            q = -1
        }
        // Nothing to deliver and nothing waiting: acknowledged at once (at-most-once).
        if q < 0 && !waiting { return .placed }
        // The queue is full, or earlier packets of this flow wait: park it, ack later.
        let park = parks[flow] ?? makePark(flow)
        guard park.count < parkCapacity else { return .refused }
        if park.count == 0 { parked.append(flow) }
        park.append(q < 0 ? nil : scratch, size: q < 0 ? 0 : queues[q].slotSize, queue: q, sequence: dccp.sequence)
        Self.bump(withheld)
        if park.templateLength == 0 { park.keepAckTemplate(p, f, dccp: dccp) }
        return .withheld
    }

    func makePark(_ flow: Int) -> Park {
        let park = Park(capacity: parkCapacity)
        parks[flow] = park
        return park
    }

    /// One flow's packets waiting for room, in order: a fixed ring of decoded slots
    /// allocated on the flow's first wait, and the ack to send when they move on.
    final class Park {
        let capacity: Int
        let slots: UnsafeMutableRawPointer
        let queues: UnsafeMutablePointer<Int16>
        let sequences: UnsafeMutablePointer<UInt64>
        var head = 0
        private(set) var count = 0
        /// An ack frame for this flow (addresses, ports), rewritten per use.
        static let templateCapacity = 128
        let template = UnsafeMutableRawPointer.allocate(byteCount: Park.templateCapacity, alignment: 8)
        var templateLength = 0

        init(capacity: Int) {
            self.capacity = capacity
            slots = .allocate(byteCount: capacity * QueuePlacement.maximumSlotSize, alignment: 16)
            queues = .allocate(capacity: capacity)
            sequences = .allocate(capacity: capacity)
        }

        deinit {
            slots.deallocate()
            queues.deallocate()
            sequences.deallocate()
            template.deallocate()
        }

        /// `slot` nil: nothing to deliver (a bad tuple), only to acknowledge in turn.
        func append(_ slot: UnsafeRawPointer?, size: Int, queue: Int, sequence: UInt64) {
            let i = (head + count) % capacity
            if let slot { (slots + i * QueuePlacement.maximumSlotSize).copyMemory(from: slot, byteCount: size) }
            queues[i] = Int16(slot == nil ? -1 : queue)
            sequences[i] = sequence
            count += 1
        }

        var slotAtHead: UnsafeRawPointer { UnsafeRawPointer(slots + head * QueuePlacement.maximumSlotSize) }
        /// The queue the head packet goes to, or -1 if it has nothing to deliver.
        var queueAtHead: Int { Int(queues[head]) }
        var sequenceAtHead: UInt64 { sequences[head] }

        func removeHead() {
            head = (head + 1) % capacity
            count -= 1
        }

        /// Keeps the headers of `p` (a Data packet of this flow) turned into its ack.
        func keepAckTemplate(_ p: Packet, _ f: ParsedFrame, dccp: DCCPView) {
            let ackEnd = dccp.offset + DCCPHeader.genericLength(extended: true) + DCCPHeader.ackLength(extended: true)
            guard ackEnd <= Self.templateCapacity else { return }
            template.copyMemory(from: p.data, byteCount: min(dccp.offset + dccp.headerLength, Self.templateCapacity))
            templateLength = FrameBuilder.rewriteDCCPDataAsAck(template, capacity: Self.templateCapacity, parsed: f,
                                                                dccpOffset: dccp.offset, acknowledgement: dccp.sequence) ?? 0
        }

        /// Appends an ack of `sequence` built from the template, in a buffer from `port`.
        func writeAck(_ sequence: UInt64, port: some PacketPort, into replies: PacketBatch) -> Bool {
            guard templateLength > 0, port.allocate(count: 1, into: replies) == 1 else { return false }
            var p = replies.packets[replies.count - 1]
            p.data.copyMemory(from: template, byteCount: templateLength)
            p.length = UInt32(templateLength)
            replies.packets[replies.count - 1] = p
            guard let f = try? ParsedFrame(parsing: p.bytes),
                  let (offset, length) = f.dccpPacket(udpEncapsulated: !f.layers.contains(.dccp)),
                  let dccp = try? DCCPHeader(UnsafeMutableRawBufferPointer(start: p.data + offset, count: length)) else {
                port.release(replies.removeLast())
                return false
            }
            dccp.setAcknowledgementNumber(sequence)
            let ip = IPv4Header(unchecked: p.data + Int(f.l3Offset), headerLength: Int(f.l4Offset &- f.l3Offset))
            guard (try? dccp.updateChecksum(ip: ip, packetLength: length)) != nil else {
                port.release(replies.removeLast())
                return false
            }
            return true
        }
    }
}
