import FlexIO
import FlexTestSupport
import FlexWire
import Testing
@testable import FlexNIC

/// The stateful building blocks: per-flow registers, compare and update actions, and
/// metadata later stages match, driven through the pipeline like every other action.
@Suite struct StatefulElementTests {
    static let port: UInt16 = 9000
    static let sequence = MatchField.payloadWord(offset: 0, width: 4)

    /// A program that delivers each flow's datagrams in sequence-number order (the first
    /// 4 payload bytes), counting per flow how many it took: what FlexStorm's receive
    /// program does with DCCP, in miniature.
    static func inOrder(capacity: Int = 8) -> SteeringProgram {
        SteeringProgram(name: "in-order", queues: 1, stages: [
            .init("track", fields: [FieldMatch(.destinationPort, .exact(UInt64(port)))], actions: [
                .lookupFlow(openWhen: FieldMatch(sequence, .exact(1))),
                .compare(sequence, register: 0, slot: 0),
            ]),
            .init("not-open", fields: [FieldMatch(.flowState, .exact(UInt64(FlowRegisters.State.notOpen.rawValue)))], actions: [.drop]),
            .init("table-full", fields: [FieldMatch(.flowState, .exact(UInt64(FlowRegisters.State.full.rawValue)))], actions: [.drop]),
            .init("next", fields: [FieldMatch(.comparison(0), .exact(UInt64(Comparison.equal.rawValue)))], actions: [
                .setRegister(0, to: sequence, plus: 1), .setRegister(1, to: .flowRegister(1), plus: 1), .toQueue(0),
            ]),
            .init("old", fields: [FieldMatch(.comparison(0), .exact(UInt64(Comparison.less.rawValue)))], actions: [.drop]),
            .init("ahead", fields: [FieldMatch(.comparison(0), .exact(UInt64(Comparison.greater.rawValue)))], actions: [.drop]),
            .init("other-ports", fields: [FieldMatch(.destinationPort, .exact(UInt64(port)), negated: true)], actions: [.toQueue(0)]),
        ], defaultDisposition: .drop, flowRegisters: .init(capacity: capacity, initial: [1, 0]))
    }

    static func datagram(_ seq: UInt32, sport: UInt16 = 40000, dport: UInt16 = port) -> [UInt8] {
        udpFrame(bytes: [UInt8(seq >> 24), UInt8(seq >> 16 & 0xFF), UInt8(seq >> 8 & 0xFF), UInt8(seq & 0xFF), 0xAB],
                 sport: sport, dport: dport)
    }

    static func seq(_ d: Descriptor) -> UInt32 {
        let p = d.packet.byteArray
        return p[42...45].reduce(0) { $0 << 8 | UInt32($1) }
    }

    @Test func flowsAreTakenInOrderAndCountedPerFlow() throws {
        let h = try PipelineHarness(Self.inOrder())
        h.run([1, 2, 2, 4, 3].map { Self.datagram($0) } + [Self.datagram(5, sport: 40001)] + [Self.datagram(1, sport: 40002)])
        let taken = h.drain(0)
        #expect(taken.map(Self.seq) == [1, 2, 3, 1])
        let c = h.counters
        // Stages: track, not-open, table-full, next, old, ahead, other-ports.
        #expect(c.stageMatched == [7, 1, 0, 4, 1, 1, 0])
        #expect(c.dropped == 3)
        let flows = try #require(h.pipeline.flows)
        #expect(flows.open == 2)
        let a = flows.lookup(address: IPv4Address(10, 0, 0, 1).value, port: 40000, opening: false)
        #expect(a.state == .found && flows[a.row, 0] == 4 && flows[a.row, 1] == 3)
        h.release(taken)
        #expect(h.port.pool.available == h.port.pool.bufferCount)  // every frame handed back once
    }

    @Test func aFullFlowTableRefusesNewFlowsAndKeepsTheOld() throws {
        let h = try PipelineHarness(Self.inOrder(capacity: 1))
        h.run([Self.datagram(1), Self.datagram(1, sport: 40001), Self.datagram(2)])
        let taken = h.drain(0)
        #expect(taken.map(Self.seq) == [1, 2])
        #expect(h.counters.stageMatched[2] == 1)  // table-full
        h.release(taken)
        #expect(h.port.pool.available == h.port.pool.bufferCount)
    }

    /// A negated match holds for every other value, never for a frame that lacks the
    /// field (an ARP frame has no ports).
    @Test func negatedMatchesNeverMatchAMissingField() throws {
        let h = try PipelineHarness(Self.inOrder())
        let arp = Frames.build { ARP.writeRequest(into: $0, from: MACAddress(2, 0, 0, 0, 0, 1), address: IPv4Address(10, 0, 0, 1),
                                                   asking: IPv4Address(10, 0, 0, 2)) }
        h.run([Self.datagram(7, dport: 53), arp])
        let taken = h.drain(0)
        #expect(taken.count == 1 && Self.seq(taken[0]) == 7)
        #expect(h.counters.stageMatched[6] == 1 && h.counters.dropped == 1)
        h.release(taken)
    }

    @Test func programsUsingStateWithoutItAreRefused() {
        func refused(_ stages: [SteeringProgram.Stage], registers: Int? = 2) -> Bool {
            let p = SteeringProgram(name: "p", queues: 1, stages: stages,
                                    flowRegisters: registers.map { .init(capacity: 4, initial: Array(repeating: 0, count: $0)) })
            return (try? p.validate()) == nil
        }
        #expect(refused([.init("s", actions: [.lookupFlow(openWhen: nil)])], registers: nil))
        #expect(refused([.init("s", actions: [.compare(Self.sequence, register: 2, slot: 0)])]))
        #expect(refused([.init("s", actions: [.compare(Self.sequence, register: 0, slot: 4)])]))
        #expect(refused([.init("s", actions: [.setRegister(0, to: .flowState, plus: 0)])]))
        #expect(refused([.init("s", fields: [FieldMatch(.flowRegister(3), .any)], actions: [.drop])]))
        #expect(refused([.init("s", actions: [.lookupFlow(openWhen: nil)])], registers: 5))
        #expect(!refused([.init("s", actions: [.lookupFlow(openWhen: nil), .setRegister(1, to: .flowRegister(0), plus: 1)])]))
        // Hostile values are refused, not trapped on when compiled.
        #expect(refused([.init("s", actions: [.lookupFlow(openWhen: nil), .place(targetAt: 1 << 32)])]))
        #expect(refused([.init("s", actions: [.lookupFlow(openWhen: FieldMatch(Self.sequence, .prefix(0, bits: 64)))])]))
        #expect(refused([.init("s", actions: [.reply([.dccpAckToSender(register: nil), .swapPorts])])]))
        #expect(refused([.init("s", actions: [.hash(.payload(offset: 1 << 40, length: nil)), .toQueue(0)])]))
        // Elements the program calls must be given to the pipeline.
        let places = SteeringProgram(name: "p", queues: 1, stages: [.init("s", actions: [.lookupFlow(openWhen: nil), .place(targetAt: 0)])],
                                     flowRegisters: .init(capacity: 4, initial: [0]))
        #expect(throws: ProgramError.self) { try SteeringPipeline(program: places) }
        let acks = SteeringProgram(name: "p", queues: 1, stages: [.init("s", actions: [.recordAck])])
        #expect(throws: ProgramError.self) { try SteeringPipeline(program: acks) }
    }
}
