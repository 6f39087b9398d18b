import FlexIO
import FlexNIC
import FlexTestSupport
import FlexWire
import Testing

@Suite struct PipelineTests {
    typealias Stage = SteeringProgram.Stage

    @Test func toQueueDeliversTheFrame() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 3, stages: [
            Stage("to-2", fields: [FieldMatch(.destinationPort, .exact(11211))], actions: [.toQueue(2)]),
        ]))
        let frame = udpFrame("hi")
        h.run([frame])
        let out = h.drain(2)
        #expect(out.count == 1 && h.bytes(out[0]) == frame && out[0].kind == .packet)
        #expect(h.counters.queueSteered == [0, 0, 1, 0])
        #expect(h.counters.stageMatched == [1])
        h.release(out)
        #expect(h.port.pool.available == h.port.pool.bufferCount)
    }

    @Test func dropFreesTheBuffer() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [Stage("drop-all", actions: [.drop])]))
        h.run([udpFrame("a"), udpFrame("b")])
        #expect(h.counters.dropped == 2)
        #expect(h.drain(0).isEmpty && h.drain(1).isEmpty)
        #expect(h.port.pool.available == h.port.pool.bufferCount)
    }

    @Test func hashAndWriteHashGiveTheToeplitzValue() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [
            Stage("rss", actions: [.hash(.fourTuple), .writeHash, .toQueue(0)]),
        ]))
        h.run([udpFrame("x", src: "66.9.149.187", dst: "161.142.100.80", sport: 2794, dport: 1766)])
        let out = h.drain(0)
        #expect(out.first?.hash == 0x51cc_c178)  // Microsoft vector, row 1
        h.release(out)
    }

    @Test func withoutWriteHashTheDescriptorCarriesNone() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [
            Stage("rss", actions: [.hash(.fourTuple), .toQueue(0)]),
        ]))
        h.run([udpFrame("x")])
        let out = h.drain(0)
        #expect(out.first?.hash == 0)
        h.release(out)
    }

    @Test func redirectFollowsTheTableAndItsReprogramming() throws {
        let program = SteeringProgram(name: "t", queues: 4, stages: [
            Stage("key", actions: [.hash(.payloadToken(offset: 4, maxLength: 250)), .writeHash, .redirect]),
        ])
        let h = try PipelineHarness(program)
        let keys = (0..<40).map { "key\($0)" }
        h.run(keys.map { udpFrame("get \($0)\r\n") })
        var seen: [String: Int] = [:]
        for q in 0..<4 {
            for d in h.drain(q) {
                let key = keys.first { KeyHash.hash(Array($0.utf8)) == d.hash }!
                #expect(h.pipeline.redirection.queue(for: d.hash) == q)
                seen[key] = q
                h.release([d])
            }
        }
        #expect(seen.count == 40)
        #expect(Set(seen.values).count > 1)
        // Re-program: everything to queue 3, while the pipeline keeps running.
        h.pipeline.redirection.update(Array(repeating: 3, count: 128))
        h.run(keys.map { udpFrame("get \($0)\r\n") })
        #expect(h.drain(3).count == 40)
        #expect(h.counters.queueSteered[3] >= 40)
    }

    @Test func stripSetsThePayloadOffset() throws {
        for (layer, offset) in [(StripLayer.l2, 14), (.l3, 34), (.l4, 42)] {
            let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [Stage("s", actions: [.strip(layer), .toQueue(0)])]))
            h.run([udpFrame("payload")])
            let out = h.drain(0)
            #expect(Int(out[0].payloadOffset) == offset)
            if layer == .l4 { #expect(Array(out[0].payload) == Array("payload".utf8)) }
            h.release(out)
        }
    }

    @Test func slowPathActionAndDefaults() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 2, stages: [
            Stage("tcp-slow", fields: [FieldMatch(.ipProtocol, .exact(6))], actions: [.slowPath]),
        ], defaultDisposition: .queue(1)))
        h.run([Frames.tcp(), udpFrame("u")])
        let slow = h.drain(2), q1 = h.drain(1)
        #expect(slow.count == 1 && slow[0].kind == .slowPath && slow[0].detail == SlowPathReason.rule.rawValue)
        #expect(q1.count == 1)
        h.release(slow + q1)
    }

    @Test func malformedFramesLandOnTheSlowPath() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [Stage("all", actions: [.toQueue(0)])]))
        let good = udpFrame("hello")
        var badChecksum = good
        badChecksum[24] ^= 0xFF  // IPv4 header checksum
        var badLength = good
        badLength[38] = 0xFF  // UDP length beyond the frame
        h.run([Array(good[..<20]), Array(good[..<40]), badChecksum, badLength, [0x00], good])
        let slow = h.drain(1)
        #expect(slow.count == 5)
        #expect(slow.allSatisfy { $0.kind == .slowPath && $0.detail == SlowPathReason.malformed.rawValue })
        #expect(h.drain(0).count == 1)
        #expect(h.counters.slowPath[.malformed] == 5)
        #expect(h.counters.stageMatched == [1])  // malformed frames reach no stage
    }

    /// A frame whose port vouches for its IPv4 header (`headerChecksumGood`: a kernel
    /// port wrote it, or a NIC verified it) is not checked again; any other is.
    @Test func aHeaderThePortVouchesForIsNotCheckedAgain() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [Stage("all", actions: [.toQueue(0)])]))
        var bad = udpFrame("hello")
        bad[24] ^= 0xFF  // IPv4 header checksum
        _ = h.port.inject(bad)
        _ = h.port.inject(bad)
        #expect(h.port.receive(queue: 0, into: h.batch) == 2)
        h.batch.packets[1].flags.insert(.headerChecksumGood)
        h.pipeline.process(h.batch, port: h.port, replies: h.replies)
        let slow = h.drain(1), steered = h.drain(0)
        #expect(slow.count == 1 && slow.first?.detail == SlowPathReason.malformed.rawValue)
        #expect(steered.count == 1 && steered.first?.packet.flags.contains(.headerChecksumGood) == true)
        h.release(slow + steered)
        #expect(h.port.pool.available == h.port.pool.bufferCount)
    }

    @Test func badL4ChecksumIsCaughtWhenVerifying() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [Stage("all", actions: [.toQueue(0)])],
                                                    verifyL4Checksums: true))
        var frame = udpFrame("checksummed")
        frame[frame.count - 1] ^= 1
        h.run([frame, udpFrame("fine")])
        #expect(h.drain(1).first?.detail == SlowPathReason.badChecksum.rawValue)
        #expect(h.drain(0).count == 1)
    }

    @Test func matchKinds() throws {
        let program = SteeringProgram(name: "t", queues: 6, stages: [
            Stage("range", fields: [FieldMatch(.destinationPort, .range(1000, 1999))], actions: [.toQueue(0)]),
            Stage("prefix", fields: [FieldMatch(.sourceAddress, .prefix(UInt64(IPv4Address(192, 168, 0, 0).value), bits: 16))],
                  actions: [.toQueue(1)]),
            Stage("masked-word", fields: [FieldMatch(.payloadWord(offset: 0, width: 2), .masked(0x8000, mask: 0x8000))],
                  actions: [.toQueue(2)]),
            Stage("nocase-bytes", payload: [PayloadMatch(offset: 0, bytes: Array("GET".utf8), mask: [0xDF, 0xDF, 0xDF])],
                  actions: [.toQueue(3)]),
            Stage("wildcard", fields: [FieldMatch(.sourcePort, .any)], actions: [.toQueue(4)]),
        ])
        let h = try PipelineHarness(program)
        h.run([udpFrame("a", dport: 1500)])
        #expect(h.drain(0).count == 1)
        h.run([udpFrame("a", src: "192.168.7.7")])
        #expect(h.drain(1).count == 1)
        h.run([udpFrame("\u{80}x")])
        #expect(h.drain(2).count == 1)
        h.run([udpFrame("get x"), udpFrame("GeT x")])
        #expect(h.drain(3).count == 2)
        h.run([udpFrame("other")])
        #expect(h.drain(4).count == 1)
        #expect(h.counters.stageMatched == [1, 1, 1, 2, 1])
    }

    @Test func annotatingStagesFallThroughDecidingStagesStop() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 2, stages: [
            Stage("strip", actions: [.strip(.l4)]),
            Stage("first", actions: [.toQueue(1)]),
            Stage("never", actions: [.toQueue(0)]),
        ]))
        h.run([udpFrame("z")])
        let out = h.drain(1)
        #expect(out.count == 1 && out[0].payloadOffset == 42)
        #expect(h.counters.stageMatched == [1, 1, 0])
        h.release(out)
    }

    @Test func fullRingDropsAndCounts() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [Stage("all", actions: [.toQueue(0)])]),
                                    ringCapacity: 4)
        h.run((0..<10).map { udpFrame("\($0)") })
        #expect(h.counters.queueSteered[0] == 4)
        #expect(h.counters.queueDroppedFull[0] == 6)
        h.release(h.drain(0))
        #expect(h.port.pool.available == h.port.pool.bufferCount)  // nothing leaked
    }

    @Test func payloadTokenTooLongGoesToTheSlowPath() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [
            Stage("key", actions: [.hash(.payloadToken(offset: 4, maxLength: 8)), .redirect]),
        ]))
        h.run([udpFrame("get 0123456789\r\n"), udpFrame("get \r\n"), udpFrame("get 01234567\r\n")])
        #expect(h.drain(1).count == 2)
        #expect(h.counters.slowPath[.payloadOutOfRange] == 2)
        #expect(h.drain(0).count == 1)
    }

    @Test func invalidProgramsAreRejected() {
        #expect(throws: ProgramError.self) {
            try SteeringPipeline(program: SteeringProgram(name: "t", queues: 1, stages: [Stage("q", actions: [.toQueue(5)])]))
        }
        #expect(throws: ProgramError.self) {
            try SteeringPipeline(program: SteeringProgram(name: "t", queues: 1, stages: [Stage("d", actions: [.drop, .toQueue(0)])]))
        }
        #expect(throws: ProgramError.self) {
            try SteeringPipeline(program: SteeringProgram(name: "t", queues: 1, stages: [], redirectionEntries: 100))
        }
        #expect(throws: ProgramError.self) {  // log without a queue
            try SteeringPipeline(program: SteeringProgram(name: "t", queues: 1, stages: [Stage("l", actions: [.appendToLog(offset: 0, length: nil)])]),
                                 logs: [LogSegments(count: 1, size: 4096)])
        }
        #expect(throws: ProgramError.self) {  // log without registered segments
            try SteeringPipeline(program: SteeringProgram(name: "t", queues: 1, stages: [Stage("l", actions: [.toQueue(0), .appendToLog(offset: 0, length: nil)])]))
        }
    }
}

@Suite struct PayloadFieldHashTests {
    /// A memcached binary GET after an 8-byte UDP frame header: the key's length is in
    /// the header, its start is after the header and the extras.
    @Test func lengthPrefixedKeyIsHashed() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [
            .init("binary", actions: [.hash(.payloadField(offset: 32, lengthAt: 10, skipAt: 12)), .writeHash, .toQueue(0)]),
        ]))
        func request(key: String, extras: Int) -> [UInt8] {
            let k = Array(key.utf8)
            var b: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0]  // UDP frame header
            b += [0x80, 0x01, 0, UInt8(k.count), UInt8(extras), 0, 0, 0] + [UInt8](repeating: 0, count: 16)
            b += [UInt8](repeating: 0xEE, count: extras) + k
            return b
        }
        h.run([udpFrame(bytes: request(key: "alpha", extras: 8)), udpFrame(bytes: request(key: "alpha", extras: 0))])
        let out = h.drain(0)
        #expect(out.count == 2)
        #expect(out.allSatisfy { $0.hash == KeyHash.hash(Array("alpha".utf8)) })
        h.release(out)
        // A length running past the payload is refused.
        var bad = request(key: "beta", extras: 0)
        bad[11] = 200
        h.run([udpFrame(bytes: bad)])
        #expect(h.drain(1).first?.detail == SlowPathReason.payloadOutOfRange.rawValue)
    }
}
