import FlexIO
import FlexWire

/// FlexStorm's receive path (thesis 5.2.1, fig. 5.4) as a steering program that
/// `SteeringPipeline` runs, for DCCP over IPv4 or in UDP (`FrameBuilder.dccpData`),
/// with a `QueuePlacement` over the application's queues behind its `place` action:
///
/// - A frame that is not DCCP, or whose DCCP header is malformed, goes to the slow path;
///   one whose DCCP checksum fails too (`verifyL4Checksums`). Both are freed, counted.
/// - Ack and DataAck packets raise the `AckBoard` register of the local sender their
///   destination port names (`recordAck`); an Ack is then done.
/// - Each connection (source address and DCCP port) has flow registers: the next
///   sequence number it must deliver and the last one acknowledged. A connection opens
///   only on the first sequence number of an epoch (a counter of 1: `DCCPSender`), so
///   packets sent before the receiver was up are sent again, never skipped.
/// - Restarts: a first sequence number above what the connection expects is a new
///   connection from the same port (its sender restarted, or started over after finding
///   this node down): the registers start over there (`reconnected`), and anything of
///   the old one that still arrives is below them, a retransmission, never delivered. A
///   receiver that restarts knows no connection: its peers' packets go unacknowledged
///   until they find it down and start over, and their next epoch opens here.
/// - Only the expected packet is taken. An earlier one (a retransmission) is not
///   delivered again, and is acknowledged again only if it is the newest acknowledged
///   one (one ack per go-back-N round, never the three duplicates of fast retransmit);
///   a later one is dropped and the last acknowledged number sent again (a duplicate
///   ack, for fast retransmit).
/// - The expected packet is placed: its payload decoded into a slot in the queue its
///   target id (a big-endian 16-bit id at `targetOffset`) names, and the packet turned
///   into its Ack. Flow control: when the queue is full the ack is withheld and the
///   packet parked; it is placed and acknowledged once the queue has room. The
///   sender's window fills and it stalls; nothing is lost inside the node. Only when a
///   park is full is a packet dropped without an ack (counted), to be sent again.
///
/// Every outcome is a stage, so the pipeline's stage counters are the receive counters
/// (`DCCPReceiveCounter`).
///
/// Threading: one thread at a time calls `process` (an rx thread, or cores taking turns
/// under the caller's lock; the handover must be a release/acquire pair). That thread
/// is the producer of every queue. The per-packet path allocates nothing and takes no
/// lock.
public final class DCCPReceiver: @unchecked Sendable {
    public let pipeline: SteeringPipeline
    public let placement: QueuePlacement
    public let acks: AckBoard
    /// The DCCP port Data packets must be addressed to.
    public let port: UInt16
    public let udpEncapsulated: Bool
    public var queues: [any PlacementQueue] { placement.queues }
    /// Bit q is set if the last `process` call delivered to queue q (q < 64), so the
    /// caller can wake those consumers.
    public var lastDelivered: UInt64 { placement.lastDelivered }
    /// Whether the last `process` call raised any ack register (senders may have room).
    public private(set) var lastTookAcks = false
    /// Whether tuples wait in parks: call `process` (with an empty batch, if need be)
    /// on every receive turn so they move on as queues drain.
    public var hasParked: Bool { placement.hasWithheld }
    let slowInbox = UnsafeMutablePointer<Descriptor>.allocate(capacity: 64)
    var acksRecorded: UInt64 = 0

    /// - Parameters:
    ///   - targets: for each target id, the index of its queue in `queues` (-1: not
    ///     here).
    ///   - connections: how many sending connections the node tracks: its memory
    ///     limit; packets of further connections are dropped and counted.
    ///   - parkCapacity: tuples each connection may have waiting for a full queue (the
    ///     senders' window is a good size).
    ///   - clock: nanoseconds, for the slots' arrival stamps.
    public init(port: UInt16, udpEncapsulated: Bool, queues: [any PlacementQueue], targets: [Int16],
                targetOffset: Int = 0, acks: AckBoard, connections: Int = 256, parkCapacity: Int = 128,
                clock: @escaping @Sendable () -> UInt64) {
        self.port = port
        self.udpEncapsulated = udpEncapsulated
        self.acks = acks
        placement = QueuePlacement(queues: queues, targets: targets, parkCapacity: parkCapacity,
                                  acknowledgedRegister: Self.acknowledged, clock: clock)
        let program = Self.program(port: port, udpEncapsulated: udpEncapsulated, acks: acks, connections: connections,
                                   targetOffset: targetOffset)
        do {
            pipeline = try SteeringPipeline(program: program, ringCapacity: 64, acks: acks, placement: placement)
        } catch {
            preconditionFailure("the DCCP receive program is invalid: \(error)")
        }
    }

    deinit { slowInbox.deallocate() }

    /// The flow registers: the next sequence number expected, the last acknowledged.
    static var expected: Int { 0 }
    static var acknowledged: Int { 1 }

    /// The program's stages, in order; each one's match count is a receive counter.
    /// A Data packet taken in order, the common case, is decided by the eighth stage;
    /// the stages it does not need come after (their matches exclude each other).
    enum Stage: Int, CaseIterable {
        case ackReceived, ackNotForUs, ack
        case connection, opened, reconnected, inOrder, placed, withheld, parkFull
        case connectionNotOpen, connectionTableFull
        case retransmissionOfLastAcked, retransmission, gapAfterAcked, gap
        case unsupportedType, notForUs, shortSequence
    }

    /// The receive program for a node serving DCCP `port` whose local senders' ack
    /// registers are `acks`.
    public static func program(port: UInt16, udpEncapsulated: Bool, acks: AckBoard, connections: Int, targetOffset: Int) -> SteeringProgram {
        let data = UInt64(DCCPHeader.PacketType.data.rawValue)
        let ack = UInt64(DCCPHeader.PacketType.ack.rawValue), dataAck = UInt64(DCCPHeader.PacketType.dataAck.rawValue)
        let board = FieldPattern.range(UInt64(acks.basePort), UInt64(acks.basePort) + UInt64(acks.count) - 1)
        let sequenceVsExpected = 0, sequenceVsAcked = 1
        // The first sequence number of an epoch (`DCCPSender`): a counter of 1.
        let first = FieldMatch(.dccpSequence, .masked(1, mask: DCCPSender.counterMask))
        func compared(_ slot: Int, _ c: Comparison) -> FieldMatch { FieldMatch(.comparison(slot), .exact(UInt64(c.rawValue))) }
        func placed(_ p: Placement) -> FieldMatch { FieldMatch(.placement, .exact(UInt64(p.rawValue))) }
        let stages: [SteeringProgram.Stage] = Stage.allCases.map { stage in
            // ackReceived -> ack-received
            let name = String(describing: stage).reduce(into: "") { out, c in out += c.isUppercase ? "-" + c.lowercased() : String(c) }
            switch stage {
            case .ackReceived:
                return .init(name, fields: [FieldMatch(.dccpType, .range(ack, dataAck)), FieldMatch(.dccpDestinationPort, board)],
                             actions: [.recordAck])
            case .ackNotForUs:
                return .init(name, fields: [FieldMatch(.dccpType, .range(ack, dataAck)), FieldMatch(.dccpDestinationPort, board, negated: true)],
                             actions: [])
            case .ack:
                return .init(name, fields: [FieldMatch(.dccpType, .exact(ack))], actions: [.drop])
            case .unsupportedType:
                return .init(name, fields: [FieldMatch(.dccpType, .range(data, dataAck), negated: true)], actions: [.drop])
            case .notForUs:
                return .init(name, fields: [FieldMatch(.dccpDestinationPort, .exact(UInt64(port)), negated: true)], actions: [.drop])
            case .shortSequence:
                return .init(name, fields: [FieldMatch(.dccpExtended, .exact(0))], actions: [.drop])
            case .connection:
                // A Data or DataAck packet (Acks are done) for us with a long sequence number.
                return .init(name, fields: [FieldMatch(.dccpType, .range(data, dataAck)), FieldMatch(.dccpDestinationPort, .exact(UInt64(port))),
                                            FieldMatch(.dccpExtended, .exact(1))], actions: [
                    .lookupFlow(openWhen: first),
                    .compare(.dccpSequence, register: expected, slot: sequenceVsExpected),
                    .compare(.dccpSequence, register: acknowledged, slot: sequenceVsAcked),
                ])
            case .opened, .reconnected:
                // An epoch's first packet above what the connection expects: a new
                // connection (its registers still hold their initial values), or one
                // that starts over (its sender restarted or found this node down).
                let fresh = FieldMatch(.flowRegister(expected), .exact(1), negated: stage == .reconnected)
                return .init(name, fields: [first, compared(sequenceVsExpected, .greater), fresh], actions: [
                    .setRegister(expected, to: .dccpSequence, plus: 0), .setRegister(acknowledged, to: .dccpSequence, plus: UInt64.max),
                    .compare(.dccpSequence, register: expected, slot: sequenceVsExpected),
                    .compare(.dccpSequence, register: acknowledged, slot: sequenceVsAcked),
                ])
            case .connectionNotOpen:
                // Its start was lost: wait for the sender to go back to 1.
                return .init(name, fields: [FieldMatch(.flowState, .exact(UInt64(FlowRegisters.State.notOpen.rawValue)))], actions: [.drop])
            case .connectionTableFull:
                return .init(name, fields: [FieldMatch(.flowState, .exact(UInt64(FlowRegisters.State.full.rawValue)))], actions: [.drop])
            case .retransmissionOfLastAcked:
                return .init(name, fields: [compared(sequenceVsExpected, .less), compared(sequenceVsAcked, .equal)],
                             actions: [.reply([.dccpAckToSender(register: nil)])])
            case .retransmission:
                return .init(name, fields: [compared(sequenceVsExpected, .less)], actions: [.drop])
            case .gapAfterAcked:
                return .init(name, fields: [compared(sequenceVsExpected, .greater), FieldMatch(.flowRegister(acknowledged), .range(1, UInt64.max))],
                             actions: [.reply([.dccpAckToSender(register: acknowledged)])])
            case .gap:
                return .init(name, fields: [compared(sequenceVsExpected, .greater)], actions: [.drop])
            case .inOrder:
                return .init(name, fields: [compared(sequenceVsExpected, .equal)], actions: [.place(targetAt: targetOffset)])
            case .placed:
                return .init(name, fields: [placed(.placed)], actions: [
                    .setRegister(expected, to: .dccpSequence, plus: 1), .setRegister(acknowledged, to: .dccpSequence, plus: 0),
                    .reply([.dccpAckToSender(register: nil)]),
                ])
            case .withheld:
                return .init(name, fields: [placed(.withheld)], actions: [.setRegister(expected, to: .dccpSequence, plus: 1), .drop])
            case .parkFull:
                return .init(name, fields: [placed(.refused)], actions: [.drop])
            }
        }
        return SteeringProgram(name: "storm-dccp-receive", queues: 1, stages: stages, defaultDisposition: .slowPath,
                               verifyL4Checksums: true,
                               flowRegisters: .init(capacity: connections, initial: [1, 0]), dccpInUDP: udpEncapsulated)
    }

    /// Handles every packet of `batch` (which is emptied): acks go to `replies` (an ack
    /// that finds it full is released: the sender's retransmission draws it again);
    /// everything else goes back to `port` (`release` is the batch for that).
    public func process(_ batch: PacketBatch, port: some PacketPort, replies: PacketBatch, release: PacketBatch) {
        pipeline.process(batch, port: port, replies: replies)
        // Malformed frames, bad checksums and frames that are not DCCP: counted by the
        // pipeline, freed here.
        while true {
            let n = pipeline.slowPathRing.dequeue(into: slowInbox, maximum: 64)
            guard n > 0 else { break }
            for i in 0..<n {
                if release.isFull { port.release(release) }
                release.append(slowInbox[i].packet)
            }
        }
        if !release.isEmpty { port.release(release) }
        let recorded = pipeline.counters.value(pipeline.counters.stageBase + Stage.ackReceived.rawValue)
        lastTookAcks = recorded != acksRecorded
        acksRecorded = recorded
    }

    /// The receive counters, from the pipeline's stage counters and the placement's.
    public var counters: DCCPReceiveCounters {
        let c = pipeline.counters.snapshot
        func matched(_ stages: Stage...) -> UInt64 { stages.reduce(0) { $0 + c.stageMatched[$1.rawValue] } }
        var v = DCCPReceiveCounters()
        v[.packets] = c.packets
        v[.delivered] = placement.delivered.load(ordering: .relaxed)
        v[.acksSent] = c.replied + placement.acksSent.load(ordering: .relaxed)
        v[.acksReceived] = matched(.ackReceived)
        v[.withheld] = matched(.withheld)
        v[.parkFull] = matched(.parkFull)
        v[.duplicates] = matched(.retransmissionOfLastAcked, .retransmission)
        v[.outOfOrder] = matched(.connectionNotOpen, .gapAfterAcked, .gap)
        v[.unknownTarget] = placement.unknownTarget.load(ordering: .relaxed)
        v[.malformed] = (c.slowPath[.malformed] ?? 0) + (c.slowPath[.rule] ?? 0) + matched(.shortSequence)
            + placement.undecodable.load(ordering: .relaxed)
        v[.badChecksum] = c.slowPath[.badChecksum] ?? 0
        v[.notForUs] = matched(.ackNotForUs, .notForUs)
        v[.unsupportedType] = matched(.unsupportedType)
        v[.connectionTableFull] = matched(.connectionTableFull)
        v[.reconnected] = matched(.reconnected)
        v[.opened] = matched(.opened)
        return v
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
    /// Connections opened (their first packet taken).
    case opened
    /// Connections started over by a new epoch (a peer restarted, or found this node
    /// down and started over).
    case reconnected

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
        case .reconnected: "reconnected"
        case .opened: "opened"
        }
    }
}

/// A `DCCPReceiver`'s counters at one moment.
public struct DCCPReceiveCounters: Sendable {
    var values = [UInt64](repeating: 0, count: DCCPReceiveCounter.allCases.count)

    public subscript(_ c: DCCPReceiveCounter) -> UInt64 {
        get { values[c.rawValue] }
        set { values[c.rawValue] = newValue }
    }

    /// Every counter by name.
    public var snapshot: [(name: String, value: UInt64)] { DCCPReceiveCounter.allCases.map { ($0.name, self[$0]) } }
}
