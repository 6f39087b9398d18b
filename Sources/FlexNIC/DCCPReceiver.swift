import FlexIO
import FlexWire
import Synchronization

/// What a queue slot of a `DCCPReceiver` is: a fixed-size record decoded from a Data
/// packet's payload, placed whole into the target's queue (the thesis's custom queue
/// format: the ring's per-slot flag marks a taken position, thesis 5.2.1).
public protocol DeliverySlot: BitwiseCopyable {
    /// Decodes the payload, stamping the time it reached the queue (`arrival`,
    /// nanoseconds); nil if the payload is malformed.
    init?(payload: UnsafeRawPointer, length: Int, arrival: UInt64)
}

/// The FlexNIC receive program of FlexStorm (thesis 5.2.1, fig. 5.4) as one steering
/// element, for DCCP carried in IPv4 or in UDP (`FrameBuilder.dccpData`):
///
/// - A Data packet's checksum is verified; a bad one is dropped and counted.
/// - Its target (a big-endian 16-bit id at `targetOffset` in the payload) is looked up
///   in a table of target -> queue; the payload is decoded into a slot and placed
///   straight into that queue; the packet itself is turned into the Ack of it
///   (addresses and ports swapped, type Ack, ack = seq, checksum) and sent back.
/// - Flow control: when the target's queue is full the ack is withheld. The tuple waits
///   in its connection's park (at most `parkCapacity` tuples, in order; everything in
///   order behind it waits there too) and is placed, and only then acknowledged, once
///   the queue has room. The sender's window fills and it stalls; nothing is lost inside
///   the node and nothing needs sending again. Only when a park is full is a packet
///   dropped without an ack (counted), for the sender to retransmit.
/// - Beyond fig. 5.4, each connection (source address and DCCP port) has registers
///   with the next sequence number it expects and the last one acknowledged, so that a
///   withheld ack never lets a later packet overtake: only the expected packet is
///   taken; an earlier one (a retransmission) is not delivered, so nothing is
///   duplicated, and is acknowledged again only if it is the newest acknowledged one; a
///   later one is dropped and the last acknowledged number sent again (a duplicate ack,
///   for fast retransmit). Acks never
///   cover parked tuples. Endpoints are preconfigured and there is no handshake: every
///   connection starts at sequence number 1 (`DCCPSender`), and the receiver opens one
///   only on that packet, so packets sent before the receiver was up are sent again,
///   never skipped. (A receiver that restarts cannot resume its peers' connections;
///   they find it down and drop, counted, what they have for it.)
/// - Unknown targets and undecodable payloads are acknowledged and dropped (counted):
///   at-most-once, and a bad tuple never stalls its connection.
/// - Ack packets raise the `AckBoard` register of the local sender they are for.
///
/// Threading: one thread at a time calls `process` (an rx thread, or cores taking turns
/// under the caller's lock; the handover must be a release/acquire pair). That thread
/// is the producer of every queue. The per-packet path allocates nothing and takes no
/// lock.
public final class DCCPReceiver<Slot: DeliverySlot>: @unchecked Sendable {
    public let queues: [SPSCRing<Slot>]
    public let acks: AckBoard
    /// The DCCP port Data packets must be addressed to.
    public let port: UInt16
    public let udpEncapsulated: Bool
    public let targetOffset: Int
    /// Target id -> queue index, or -1.
    let targets: [Int16]
    let connections: ConnectionTable
    let clock: @Sendable () -> UInt64
    public let counters = DCCPReceiveCounters()
    /// Bit q is set if the last `process` call delivered to queue q (q < 64), so the
    /// caller can wake those consumers.
    public private(set) var lastDelivered: UInt64 = 0
    /// Whether the last `process` call raised any ack register (senders may have room).
    public private(set) var lastTookAcks = false
    /// Tuples a connection may have waiting for room; nil until it first needs one.
    let parkCapacity: Int
    var parks: [Park?]
    /// Connections whose park is not empty.
    var parked: [Int] = []
    /// Whether tuples wait in parks: call `process` (with an empty batch, if need be)
    /// on every receive turn so they move on as queues drain.
    public var hasParked: Bool { !parked.isEmpty }

    /// - Parameters:
    ///   - targets: for each target id, the index of its queue in `queues` (-1: not
    ///     here).
    ///   - connections: how many sending connections the node tracks: its memory
    ///     limit; packets of further connections are dropped and counted.
    ///   - parkCapacity: tuples each connection may have waiting for a full queue (the
    ///     senders' window is a good size).
    ///   - clock: nanoseconds, for the slots' arrival stamps.
    public init(port: UInt16, udpEncapsulated: Bool, queues: [SPSCRing<Slot>], targets: [Int16],
                targetOffset: Int = 0, acks: AckBoard, connections: Int = 256, parkCapacity: Int = 128,
                clock: @escaping @Sendable () -> UInt64) {
        precondition(queues.count <= 64, "at most 64 queues")
        precondition(targets.allSatisfy { $0 < queues.count }, "target table names a queue that does not exist")
        self.port = port
        self.udpEncapsulated = udpEncapsulated
        self.queues = queues
        self.targets = targets
        self.targetOffset = targetOffset
        self.acks = acks
        let table = ConnectionTable(capacity: connections)
        self.connections = table
        self.parkCapacity = max(1, parkCapacity)
        parks = [Park?](repeating: nil, count: table.mask + 1)
        parked.reserveCapacity(table.mask + 1)
        self.clock = clock
    }

    /// Handles every packet of `batch` (which is emptied): acks go to `replies` (an ack
    /// that finds it full is released: the sender's retransmission draws it again);
    /// everything else goes back to `port`.
    public func process(_ batch: PacketBatch, port: some PacketPort, replies: PacketBatch, release: PacketBatch) {
        lastDelivered = 0
        var tally = DCCPReceiveCounters.Tally()
        let now = clock()
        if !parked.isEmpty { moveParked(port: port, replies: replies, tally: &tally) }
        for i in 0..<batch.count {
            var p = batch.packets[i]
            if handle(&p, now: now, tally: &tally) && !replies.isFull {
                replies.append(p)
                tally[.acksSent] &+= 1
            } else {
                if release.isFull { port.release(release) }
                release.append(p)
            }
        }
        batch.removeAll()
        if !release.isEmpty { port.release(release) }
        lastTookAcks = tally[.acksReceived] > 0
        counters.add(tally)
    }

    /// One packet; true if it was turned into an ack to send.
    @inline(__always)
    func handle(_ p: inout Packet, now: UInt64, tally: inout DCCPReceiveCounters.Tally) -> Bool {
        tally[.packets] &+= 1
        guard let f = try? ParsedFrame(parsing: p.bytes), f.layers.contains(.ipv4),
              let (offset, length) = f.dccpPacket(udpEncapsulated: udpEncapsulated) else {
            tally[.malformed] &+= 1
            return false
        }
        let bytes = UnsafeMutableRawBufferPointer(start: p.data + offset, count: length)
        guard let dccp = try? DCCPHeader(bytes) else { tally[.malformed] &+= 1; return false }
        let ip = IPv4Header(unchecked: p.data + Int(f.l3Offset), headerLength: Int(f.l4Offset &- f.l3Offset))
        guard (try? dccp.verifyChecksum(ip: ip, packetLength: length)) != nil else { tally[.badChecksum] &+= 1; return false }

        switch dccp.type {
        case .ack, .dataAck:
            if acks.record(port: dccp.destinationPort, acknowledgement: dccp.acknowledgementNumber ?? 0) {
                tally[.acksReceived] &+= 1
            } else {
                tally[.notForUs] &+= 1
            }
            if dccp.type == .ack { return false }
        case .data: break
        default:
            tally[.unsupportedType] &+= 1
            return false
        }
        guard dccp.destinationPort == self.port else { tally[.notForUs] &+= 1; return false }
        guard dccp.extendedSequence else { tally[.malformed] &+= 1; return false }

        let sequence = dccp.sequenceNumber
        let c: Int
        switch connections.slot(address: f.sourceAddress, port: dccp.sourcePort, opening: sequence == 1) {
        case .found(let i): c = i
        case .notOpen:
            tally[.outOfOrder] &+= 1  // its start was lost: wait for the sender to go back to 1
            return false
        case .full:
            tally[.connectionTableFull] &+= 1
            return false
        }
        let expected = connections.expected[c]
        let acked = connections.acked[c]
        if sequence < expected {
            // A retransmission. Acknowledged again only if it is the newest packet
            // acknowledged: one ack per go-back-N round, which restores a lost ack but
            // never adds up to the three duplicates of fast retransmit. Parked tuples'
            // copies get nothing: their acks are withheld on purpose.
            tally[.duplicates] &+= 1
            return sequence == acked && ack(&p, f, offset, acknowledging: acked)
        }
        if sequence > expected {
            tally[.outOfOrder] &+= 1  // something before it was lost: a duplicate ack
            return acked > 0 && ack(&p, f, offset, acknowledging: acked)
        }

        let payload = UnsafeRawPointer(p.data) + offset + dccp.headerLength
        let payloadLength = length &- dccp.headerLength
        var q = -1
        if targetOffset &+ 2 <= payloadLength {
            let target = Int(payload.loadBE16(at: targetOffset))
            q = target < targets.count ? Int(targets[target]) : -1
            if q < 0 { tally[.unknownTarget] &+= 1 }
        } else {
            tally[.malformed] &+= 1
        }
        // Decoded only for a known target; nil (acknowledged, not delivered) otherwise.
        let slot = q >= 0 ? Slot(payload: payload, length: payloadLength, arrival: now) : nil
        if q >= 0 && slot == nil { tally[.malformed] &+= 1 }

        if (parks[c]?.count ?? 0) == 0 && (slot == nil || !queues[q].isFull) {
            connections.expected[c] = expected &+ 1
            connections.acked[c] = sequence
            if let slot {
                _ = queues[q].enqueue(slot)
                tally[.delivered] &+= 1
                if q < 64 { lastDelivered |= 1 << UInt64(q) }
            }
            return ack(&p, f, offset, acknowledging: sequence)
        }
        // The queue is full, or earlier tuples of this connection wait: park it, ack later.
        let park = parks[c] ?? makePark(c)
        guard park.count < parkCapacity else {
            tally[.parkFull] &+= 1  // no ack: the sender sends it again
            return false
        }
        if park.count == 0 { parked.append(c) }
        park.append(slot, queue: q, sequence: sequence)
        connections.expected[c] = expected &+ 1
        tally[.withheld] &+= 1
        // Keep this packet, turned into an ack, as the template of the ack to come.
        if ack(&p, f, offset, acknowledging: sequence) { park.keepTemplate(p) }
        return false
    }

    func makePark(_ c: Int) -> Park {
        let park = Park(capacity: parkCapacity)
        parks[c] = park
        return park
    }

    /// Moves parked tuples into their queues as far as there is room, in each
    /// connection's order, and acknowledges what moved (one ack per connection, built
    /// from its template).
    func moveParked(port: some PacketPort, replies: PacketBatch, tally: inout DCCPReceiveCounters.Tally) {
        var i = 0
        while i < parked.count {
            let c = parked[i]
            let park = parks[c]!
            var last: UInt64 = 0
            while park.count > 0 {
                let q = park.queueAtHead
                if q >= 0 {
                    guard queues[q].enqueue(park.slotAtHead!) else { break }
                    tally[.delivered] &+= 1
                    if q < 64 { lastDelivered |= 1 << UInt64(q) }
                }
                last = park.sequenceAtHead
                park.removeHead()
            }
            if last > 0 {
                connections.acked[c] = last
                if !replies.isFull, park.writeAck(last, port: port, into: replies) { tally[.acksSent] &+= 1 }
            }
            if park.count == 0 {
                parked.swapAt(i, parked.count - 1)
                parked.removeLast()
            } else {
                i += 1
            }
        }
    }

    @inline(__always)
    func ack(_ p: inout Packet, _ f: ParsedFrame, _ offset: Int, acknowledging n: UInt64) -> Bool {
        guard let length = FrameBuilder.rewriteDCCPDataAsAck(p.data, capacity: Int(p.capacity), parsed: f,
                                                             dccpOffset: offset, acknowledgement: n) else { return false }
        p.length = UInt32(length)
        return true
    }
}

/// Per-connection receive registers: the next sequence number each sending
/// connection (source address, DCCP source port) must deliver. Open addressing over a
/// fixed power-of-two table, so its memory is bounded and lookups never allocate.
final class ConnectionTable {
    let keys: UnsafeMutablePointer<UInt64>
    let expected: UnsafeMutablePointer<UInt64>
    /// The last sequence number acknowledged (all before it delivered or dropped).
    let acked: UnsafeMutablePointer<UInt64>
    let mask: Int
    var used = 0

    init(capacity: Int) {
        var n = 8
        while n < capacity * 2 { n <<= 1 }  // at most half full
        mask = n - 1
        keys = .allocate(capacity: n)
        keys.initialize(repeating: 0, count: n)
        expected = .allocate(capacity: n)
        expected.initialize(repeating: 0, count: n)
        acked = .allocate(capacity: n)
        acked.initialize(repeating: 0, count: n)
    }

    deinit {
        keys.deallocate()
        expected.deallocate()
        acked.deallocate()
    }

    enum Lookup { case found(Int), notOpen, full }

    /// The connection's slot. An unknown connection is opened (expecting sequence
    /// number 1) only if `opening`, while the table has room.
    @inline(__always)
    func slot(address: UInt32, port: UInt16, opening: Bool) -> Lookup {
        let key = 1 << 63 | UInt64(address) << 16 | UInt64(port)
        var i = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 40) & mask
        while true {
            if keys[i] == key { return .found(i) }
            if keys[i] == 0 {
                guard opening else { return .notOpen }
                guard used < (mask + 1) / 2 else { return .full }
                keys[i] = key
                expected[i] = 1
                acked[i] = 0
                used &+= 1
                return .found(i)
            }
            i = (i &+ 1) & mask
        }
    }
}

/// What a `DCCPReceiver` counts.
public enum DCCPReceiveCounter: Int, CaseIterable, Sendable {
    case packets, delivered, acksSent, acksReceived
    /// Tuples whose ack was withheld: their queue was full (or earlier ones waited), so
    /// they were parked and acknowledged once placed (flow control).
    case withheld
    /// Tuples dropped without an ack because their connection's park was full.
    case parkFull
    case duplicates, outOfOrder, unknownTarget, malformed, badChecksum, notForUs, unsupportedType
    case connectionTableFull

    public var name: String {
        switch self {
        case .packets: "packets"
        case .delivered: "delivered"
        case .acksSent: "acks_sent"
        case .acksReceived: "acks_received"
        case .withheld: "withheld_queue_full"
        case .parkFull: "dropped_park_full"
        case .duplicates: "duplicates"
        case .outOfOrder: "out_of_order"
        case .unknownTarget: "unknown_target"
        case .malformed: "malformed"
        case .badChecksum: "bad_checksum"
        case .notForUs: "not_for_us"
        case .unsupportedType: "unsupported_type"
        case .connectionTableFull: "connection_table_full"
        }
    }
}

/// A `DCCPReceiver`'s counters, added to once per burst and readable from any thread.
public final class DCCPReceiveCounters: @unchecked Sendable {
    /// One burst's counts, kept in registers until the burst ends.
    struct Tally {
        var values = SIMD16<UInt64>()
        @inline(__always) subscript(_ c: DCCPReceiveCounter) -> UInt64 {
            get { values[c.rawValue] }
            set { values[c.rawValue] = newValue }
        }
    }

    let values: UnsafeMutablePointer<Atomic<UInt64>>
    static let count = DCCPReceiveCounter.allCases.count

    init() {
        values = .allocate(capacity: Self.count)
        for i in 0..<Self.count { (values + i).initialize(to: Atomic(0)) }
    }

    deinit { values.deallocate() }

    func add(_ t: Tally) {
        for i in 0..<Self.count where t.values[i] > 0 { values[i].wrappingAdd(t.values[i], ordering: .relaxed) }
    }

    public subscript(_ c: DCCPReceiveCounter) -> UInt64 { values[c.rawValue].load(ordering: .relaxed) }

    /// Every counter by name.
    public var snapshot: [(name: String, value: UInt64)] { DCCPReceiveCounter.allCases.map { ($0.name, self[$0]) } }
}

extension DCCPReceiver {
    /// One connection's tuples waiting for room, in order: a fixed ring allocated on
    /// the connection's first wait, and the ack to send when they move on.
    final class Park {
        let capacity: Int
        let slots: UnsafeMutablePointer<Slot?>
        let queues: UnsafeMutablePointer<Int16>
        let sequences: UnsafeMutablePointer<UInt64>
        var head = 0
        private(set) var count = 0
        /// An ack frame for this connection (addresses, ports), rewritten per use.
        let template = UnsafeMutableRawPointer.allocate(byteCount: 128, alignment: 8)
        var templateLength = 0

        init(capacity: Int) {
            self.capacity = capacity
            slots = .allocate(capacity: capacity)
            slots.initialize(repeating: nil, count: capacity)
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
        func append(_ slot: Slot?, queue: Int, sequence: UInt64) {
            let i = (head + count) % capacity
            slots[i] = slot
            queues[i] = Int16(queue)
            sequences[i] = sequence
            count += 1
        }

        var slotAtHead: Slot? { slots[head] }
        /// The queue the head tuple goes to, or -1 if it has nothing to deliver.
        var queueAtHead: Int { slots[head] == nil ? -1 : Int(queues[head]) }
        var sequenceAtHead: UInt64 { sequences[head] }

        func removeHead() {
            head = (head + 1) % capacity
            count -= 1
        }

        func keepTemplate(_ p: Packet) {
            guard p.length <= 128 else { return }
            template.copyMemory(from: p.data, byteCount: Int(p.length))
            templateLength = Int(p.length)
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
