import FlexIO
import FlexNIC
import FlexTestSupport
import FlexWire
import Testing
@testable import FlexStorm

/// The steering layer's DCCP receive element and sender, with crafted frames: what
/// FlexStorm's flow control and at-most-once guarantees rest on.
@Suite struct DCCPFlowControlTests {
    static let nodePort: UInt16 = 7100
    static let peer = FrameBuilder.Endpoints(source: IPv4Address(198, 18, 1, 2), destination: IPv4Address(198, 18, 1, 1),
                                             sourcePort: 7100, destinationPort: nodePort)

    /// A receiver with two worker queues (ids 5 and 6) of `depth` slots.
    final class Rig {
        let port = MemoryPort()
        let queues: [SPSCRing<Tuple>]
        let acks = AckBoard(basePort: 7101, count: 4)
        let receiver: DCCPReceiver

        init(depth: Int = 8, udp: Bool = true, park: Int = 8) {
            queues = [SPSCRing<Tuple>(capacity: depth), SPSCRing<Tuple>(capacity: depth)]
            var targets = [Int16](repeating: -1, count: 8)
            targets[5] = 0
            targets[6] = 1
            receiver = DCCPReceiver(port: nodePort, udpEncapsulated: udp, queues: queues, targets: targets, acks: acks,
                                    parkCapacity: park, clock: { 42 })
        }

        /// Feeds frames through the element; returns the acks it built.
        func feed(_ frames: [[UInt8]]) -> [[UInt8]] {
            for f in frames { #expect(port.inject(f)) }
            let batch = PacketBatch(capacity: 64), replies = PacketBatch(capacity: 64), release = PacketBatch(capacity: 64)
            _ = port.receive(queue: 0, into: batch)
            receiver.process(batch, port: port, replies: replies, release: release)
            let out = (0..<replies.count).map { replies[$0].byteArray }
            port.release(replies)
            return out
        }

        func drain(_ q: Int) -> [Tuple] {
            var all: [Tuple] = []
            while let t = queues[q].dequeue() { all.append(t) }
            return all
        }
    }

    static func tuple(to worker: UInt16, _ name: String) -> [UInt8] {
        var wire = [UInt8](repeating: 0, count: Tuple.wireLength)
        wire.withUnsafeMutableBytes { Tuple(destination: worker, source: 1, kind: .user, user: UserName(name)!).encode(to: $0.baseAddress!) }
        return wire
    }

    static func data(_ seq: UInt64, to worker: UInt16 = 5, _ name: String = "alice", udp: Bool = true,
                     from dccpPort: UInt16 = 7201, payload: [UInt8]? = nil) -> [UInt8] {
        let p = payload ?? tuple(to: worker, name)
        return Frames.build { buffer in
            p.withUnsafeBytes {
                try! FrameBuilder.dccpData(into: buffer, endpoints: peer, udpEncapsulated: udp, dccpPorts: (dccpPort, nodePort),
                                           sequence: seq, payload: $0.baseAddress!, count: p.count)
            }
        }
    }

    /// Parses an ack and checks it is a valid Ack back to the sender; returns its ack number.
    static func ackNumber(_ frame: [UInt8], udp: Bool = true) throws -> UInt64 {
        var bytes = frame
        return try bytes.withUnsafeMutableBytes { b in
            let f = try ParsedFrame(parsing: b)
            #expect(IPv4Address(f.sourceAddress) == peer.destination && IPv4Address(f.destinationAddress) == peer.source)
            let (offset, length) = try #require(f.dccpPacket(udpEncapsulated: udp))
            let d = try DCCPHeader(UnsafeMutableRawBufferPointer(rebasing: b[offset..<(offset + length)]))
            #expect(d.type == .ack && d.sourcePort == nodePort && d.destinationPort == 7201 && length == d.headerLength)
            if udp { #expect(f.sourcePort == nodePort && f.destinationPort == 7100) }
            let ip = IPv4Header(unchecked: b.baseAddress! + Int(f.l3Offset), headerLength: 20)
            try d.verifyChecksum(ip: ip, packetLength: length)
            return try #require(d.acknowledgementNumber)
        }
    }

    @Test(arguments: [true, false])
    func inOrderDataIsPlacedAndAckedInPlace(udp: Bool) throws {
        let rig = Rig(udp: udp)
        let acks = rig.feed([Self.data(1, udp: udp), Self.data(2, to: 6, "bob", udp: udp), Self.data(3, udp: udp)])
        #expect(try acks.map { try Self.ackNumber($0, udp: udp) } == [1, 2, 3])
        #expect(rig.drain(0).map { "\($0.user)" } == ["alice", "alice"])
        let bob = rig.drain(1)
        #expect(bob.map { "\($0.user)" } == ["bob"] && bob[0].arrived == 42)
        #expect(rig.receiver.counters[.delivered] == 3 && rig.receiver.lastDelivered == 0b11)
    }

    @Test func retransmissionsAreAckedAgainButNeverDeliveredTwice() throws {
        let rig = Rig()
        let acks = rig.feed([Self.data(1), Self.data(2), Self.data(1), Self.data(2), Self.data(3)])
        // The copy of 1 draws no ack (2 covers it); the copy of 2, the newest acked, does.
        #expect(try acks.map { try Self.ackNumber($0) } == [1, 2, 2, 3])
        #expect(rig.drain(0).count == 3)
        #expect(rig.receiver.counters[.duplicates] == 2)
    }

    @Test func aGapIsNotOvertaken() throws {
        let rig = Rig()
        let acks = rig.feed([Self.data(1), Self.data(3), Self.data(4)])
        // 3 and 4 wait for 2: dropped, and 1 acknowledged again (duplicate acks).
        #expect(try acks.map { try Self.ackNumber($0) } == [1, 1, 1])
        #expect(rig.drain(0).count == 1 && rig.receiver.counters[.outOfOrder] == 2)
        #expect(try rig.feed([Self.data(2), Self.data(3), Self.data(4)]).map { try Self.ackNumber($0) } == [2, 3, 4])
        #expect(rig.drain(0).count == 3)
    }

    /// A receiver that came up after its peer began: the first packets it sees are not
    /// the connection's start, and taking them as such would acknowledge the lost ones.
    @Test func aConnectionOpensOnlyAtItsFirstSequenceNumber() throws {
        let rig = Rig()
        #expect(rig.feed([Self.data(3), Self.data(4)]).isEmpty)
        #expect(rig.drain(0).isEmpty && rig.receiver.counters[.outOfOrder] == 2)
        #expect(try rig.feed((1...4).map { Self.data($0) }).map { try Self.ackNumber($0) } == [1, 2, 3, 4])
        #expect(rig.drain(0).count == 4)
    }

    @Test func aFullQueueWithholdsTheAckAndLosesNothing() throws {
        let rig = Rig(depth: 2)
        let acks = rig.feed((1...4).map { Self.data($0, "u\($0)") })
        // 3 finds the queue full: parked, its ack withheld; 4 waits behind it.
        #expect(try acks.map { try Self.ackNumber($0) } == [1, 2])
        #expect(rig.receiver.counters[.withheld] == 2 && rig.receiver.hasParked)
        // A retransmission of 3 is a duplicate: not taken twice, and no ack while it is parked.
        #expect(rig.feed([Self.data(3, "u3")]).isEmpty)
        #expect(rig.drain(0).map { "\($0.user)" } == ["u1", "u2"])
        // The queue drained: the next receive turn places 3 and 4 and acks them at once.
        #expect(try rig.feed([]).map { try Self.ackNumber($0) } == [4])
        #expect(rig.drain(0).map { "\($0.user)" } == ["u3", "u4"] && !rig.receiver.hasParked)
        #expect(rig.receiver.counters[.delivered] == 4 && rig.receiver.counters[.duplicates] == 1)
    }

    @Test func aFullParkDropsWithoutAnAck() throws {
        let rig = Rig(depth: 2, park: 1)
        let acks = rig.feed((1...4).map { Self.data($0, "u\($0)") })
        // 3 is parked; 4 finds the park full: dropped unacknowledged, for the sender to resend.
        #expect(try acks.map { try Self.ackNumber($0) } == [1, 2])
        #expect(rig.receiver.counters[.parkFull] == 1)
        _ = rig.drain(0)
        #expect(try rig.feed([Self.data(4, "u4")]).map { try Self.ackNumber($0) } == [3, 4])
        #expect(rig.drain(0).map { "\($0.user)" } == ["u3", "u4"])
    }

    @Test func badPacketsAreCountedNotDeliveredAndNothingCrashes() throws {
        let rig = Rig()
        var corrupt = Self.data(1)
        corrupt[corrupt.count - 3] ^= 0x40  // a payload byte: the DCCP checksum no longer holds
        let good = Self.data(1)
        let truncatedHeader = Array(good.prefix(42 + 10))  // UDP says more than there is
        var shortDCCP = Array(good.prefix(42 + 12))
        shortDCCP[38] = 0; shortDCCP[39] = 20  // a consistent UDP datagram holding 12 bytes of DCCP
        shortDCCP[16] = 0; shortDCCP[17] = 40
        var noIPv4 = good
        noIPv4[12] = 0x86; noIPv4[13] = 0xDD
        let acks = rig.feed([corrupt, truncatedHeader, shortDCCP, noIPv4, [1, 2, 3]])
        #expect(acks.isEmpty && rig.drain(0).isEmpty)
        #expect(rig.receiver.counters[.badChecksum] == 1)
        #expect(rig.receiver.counters[.malformed] == 4)
        // The connection was never started by the bad packets: the good one is delivered.
        #expect(try rig.feed([good]).map { try Self.ackNumber($0) } == [1])
        #expect(rig.drain(0).count == 1)
    }

    @Test func unknownWorkersAndUndecodableTuplesAreAckedAndDropped() throws {
        let rig = Rig()
        var garbage = Self.tuple(to: 5, "x")
        garbage[4] = 77  // unknown kind
        let acks = rig.feed([Self.data(1, to: 99), Self.data(2, to: 7), Self.data(3, payload: garbage),
                             Self.data(4, payload: [0]), Self.data(5)])
        // Acked, so a bad tuple never stalls its connection (at-most-once).
        #expect(try acks.map { try Self.ackNumber($0) } == [1, 2, 3, 4, 5])
        #expect(rig.receiver.counters[.unknownTarget] == 2 && rig.receiver.counters[.malformed] == 2)
        #expect(rig.drain(0).count == 1)
    }

    @Test func acksRaiseTheSendersRegister() throws {
        let rig = Rig()
        // The acks this receiver builds, fed to another receiver whose sender they are for.
        let acks = rig.feed([Self.data(1), Self.data(2)])
        let sender = Rig()
        let board = AckBoard(basePort: 7201, count: 1)
        let receiver = DCCPReceiver(port: 7100, udpEncapsulated: true, queues: sender.queues, targets: [],
                                    acks: board, clock: { 0 })
        for a in acks { #expect(sender.port.inject(a)) }
        let batch = PacketBatch(capacity: 8), replies = PacketBatch(capacity: 8), release = PacketBatch(capacity: 8)
        _ = sender.port.receive(queue: 0, into: batch)
        receiver.process(batch, port: sender.port, replies: replies, release: release)
        #expect(replies.isEmpty && board.acknowledged(0) == 2 && receiver.counters[.acksReceived] == 2)
    }

    /// A sender of tuples to the receiver's node, acknowledged in `board`'s register 0.
    static func sender(_ board: AckBoard, _ settings: DCCPSender.Settings) -> DCCPSender {
        DCCPSender(route: .init(endpoints: peer, dccpSourcePort: 7201, dccpDestinationPort: 7100, udpEncapsulated: true),
                   payloadLength: Tuple.wireLength, acks: board, ackIndex: 0, settings: settings)
    }

    @Test func senderStallsOnAFullWindowAndGoesBackN() throws {
        let board = AckBoard(basePort: 7201, count: 1)
        var settings = DCCPSender.Settings()
        settings.window = 4
        settings.retransmitAfter = 1_000_000
        settings.downAfter = 50_000_000
        settings.firstEpoch = 0
        let s = Self.sender(board, settings)
        let port = MemoryPort()
        let frames = PacketBatch(capacity: 16)
        var now: UInt64 = 1_000_000_000
        for i in 1...4 {
            #expect(s.hasRoom)
            _ = port.allocate(count: 1, into: frames)
            let payload = Self.tuple(to: 5, "u\(i)")
            payload.withUnsafeBytes { s.send($0.baseAddress!, into: &frames.packets[frames.count - 1], now: now) }
        }
        #expect(!s.hasRoom && s.inFlight == 4)
        // What it sent is what a receiver delivers.
        let rig = Rig()
        #expect(rig.feed((0..<4).map { frames[$0].byteArray }).count == 4)
        port.release(frames)
        // Acks up to 2 open the window by two.
        _ = board.record(port: 7201, acknowledgement: 2)
        now += 100_000
        s.refresh(now: now)
        #expect(s.hasRoom && s.inFlight == 2)
        // Nothing more is acked: after the timeout 3 and 4 go again, in order.
        #expect(s.retransmit(now: now, port: port, into: frames) == 0)
        now += 2_000_000
        #expect(s.retransmit(now: now, port: port, into: frames) == 2)
        let again = (0..<2).map { frames[$0].byteArray }
        let seqs = try again.map { f -> UInt64 in
            var b = f
            return try b.withUnsafeMutableBytes { try DCCPHeader(UnsafeMutableRawBufferPointer(rebasing: $0[42...])).sequenceNumber }
        }
        #expect(seqs == [3, 4] && s.counters.retransmitted == 2)
        port.release(frames)
        // The timeout doubled: no second copy 2 ms later.
        now += 1_500_000
        #expect(s.retransmit(now: now, port: port, into: frames) == 0)
        // Silence past downAfter: the peer is down, and the connection starts over in a
        // later epoch; 3 and 4 are counted lost. The next payload probes; its ack brings
        // the peer back up.
        now += 60_000_000
        s.refresh(now: now)
        #expect(s.isDown && s.counters.timesDown == 1 && s.counters.lostInFlight == 2 && s.inFlight == 0)
        #expect(s.epoch > 0 && s.hasRoom && !s.isRefusing)
        _ = board.record(port: 7201, acknowledgement: 4)
        s.refresh(now: now)
        #expect(s.isDown, "an ack of the old epoch changes nothing")
        _ = port.allocate(count: 1, into: frames)
        Self.tuple(to: 5, "probe").withUnsafeBytes { s.send($0.baseAddress!, into: &frames.packets[frames.count - 1], now: now) }
        #expect(s.isRefusing && s.nextSequence == s.epoch << UInt64(DCCPSender.counterBits) | 2)
        _ = board.record(port: 7201, acknowledgement: s.epoch << UInt64(DCCPSender.counterBits) | 1)
        s.refresh(now: now)
        #expect(!s.isDown && !s.isRefusing && s.inFlight == 0)
        port.release(frames)
    }

    /// A first sequence number of a later epoch starts the connection over (its sender
    /// restarted): delivered, counted; the old epoch's late packets are never delivered,
    /// and neither is the new one's first again.
    @Test func aNewEpochStartsTheConnectionOver() throws {
        let rig = Rig()
        let epoch: UInt64 = 13_600_000_000 & 0xFFF_FFFF, bits = UInt64(DCCPSender.counterBits)
        #expect(rig.feed([Self.data(1, "a"), Self.data(2, "b")]).count == 2)
        let acks = rig.feed([Self.data(epoch << bits | 1, "c"), Self.data(epoch << bits | 2, "d"), Self.data(3, "late"), Self.data(epoch << bits | 1, "c")])
        #expect(try acks.map { try Self.ackNumber($0) } == [epoch << bits | 1, epoch << bits | 2])
        #expect(rig.drain(0).map(\.user.description) == ["a", "b", "c", "d"])
        let c = rig.receiver.counters
        #expect(c[.reconnected] == 1 && c[.delivered] == 4 && c[.duplicates] == 2)
    }

    /// A receiver that restarted knows no connection: the sender goes unacknowledged,
    /// finds it down, starts over, and its next payload opens the connection there.
    @Test func aRestartedReceiverIsFoundAgain() throws {
        let board = AckBoard(basePort: 7201, count: 1)
        var settings = DCCPSender.Settings()
        settings.window = 8
        settings.downAfter = 50_000_000
        settings.probeEvery = 10_000_000
        let s = Self.sender(board, settings)
        let port = MemoryPort()
        var now: UInt64 = 1_000_000_000
        /// Sends `names` (as far as the sender takes them); returns the frames.
        func send(_ names: [String]) -> [[UInt8]] {
            let frames = PacketBatch(capacity: 16)
            for n in names where s.hasRoom && !s.isRefusing {
                _ = port.allocate(count: 1, into: frames)
                Self.tuple(to: 5, n).withUnsafeBytes { s.send($0.baseAddress!, into: &frames.packets[frames.count - 1], now: now) }
            }
            defer { port.release(frames) }
            return (0..<frames.count).map { frames[$0].byteArray }
        }
        func acknowledge(_ acks: [[UInt8]]) {
            for a in acks { _ = board.record(port: 7201, acknowledgement: try! Self.ackNumber(a)) }
            s.refresh(now: now)
        }
        let first = Rig()
        acknowledge(first.feed(send(["a", "b", "c"])))
        #expect(s.inFlight == 0 && first.drain(0).count == 3)
        // The receiver restarts: the next two go unacknowledged.
        let second = Rig()
        #expect(second.feed(send(["d", "e"])).isEmpty && second.receiver.counters[.outOfOrder] == 2)
        now += 60_000_000
        s.refresh(now: now)
        #expect(s.isDown && s.counters.lostInFlight == 2 && s.inFlight == 0)
        // The probe opens the new connection; the rest follows.
        acknowledge(second.feed(send(["f", "g"])))
        #expect(!s.isDown && s.counters.refusedWhileDown == 0)
        acknowledge(second.feed(send(["h"])))
        #expect(second.drain(0).map(\.user.description) == ["f", "h"], "the probe and what followed; nothing twice")
    }
}
