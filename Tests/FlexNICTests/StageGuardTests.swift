@testable import FlexNIC
import FlexIO
import FlexWire
import Testing

/// A stage's guard byte (`CompiledProgram.Stage.guardOffset`) only lets the pipeline
/// skip stages that could not have matched: with guards and without, every frame gets
/// the same verdict.
@Suite struct StageGuardTests {
    typealias Stage = SteeringProgram.Stage

    static let program = SteeringProgram(name: "guards", queues: 5, stages: [
        Stage("text", payload: [PayloadMatch(offset: 8, text: "get ")], actions: [.toQueue(0)]),
        Stage("masked-word", fields: [FieldMatch(.payloadWord(offset: 9, width: 1), .masked(0x01, mask: 0xEF)),
                                      FieldMatch(.payloadWord(offset: 8, width: 1), .exact(0x80))],
              actions: [.toQueue(1)]),
        Stage("wide-word", fields: [FieldMatch(.payloadWord(offset: 2, width: 4), .exact(1))], actions: [.toQueue(2)]),
        Stage("masked-pattern", payload: [PayloadMatch(offset: 0, bytes: [0x41, 0x42], mask: [0xDF, 0xFF])],
              actions: [.toQueue(3)]),
        Stage("range-only", fields: [FieldMatch(.payloadWord(offset: 1, width: 1), .range(0x10, 0x20))], actions: [.toQueue(4)]),
    ])

    @Test func guardsComeFromAPatternOrAnExactOrMaskedWord() throws {
        let pipeline = try SteeringPipeline(program: Self.program)  // owns the compiled stages
        func guardOf(_ i: Int) -> [Int] {
            let stage = pipeline.code.stages[i]
            return [Int(stage.guardOffset), Int(stage.guardMask), Int(stage.guardValue)]
        }
        #expect(guardOf(0) == [8, 0xFF, 0x67])  // "g"
        #expect(guardOf(1) == [8, 0xFF, 0x80])  // the last nonzero one: the magic byte, not the opcode's 0x01 before it
        #expect(guardOf(2) == [2, 0xFF, 0x00])  // a 4-byte word's first byte (the high byte of 1): zero, the only one
        #expect(guardOf(3) == [0, 0xDF, 0x41])  // "A" or "a"
        #expect(guardOf(4)[0] == -1, "a range implies no byte")
    }

    @Test func guardsChangeNoVerdict() throws {
        let guarded = try SteeringPipeline(program: Self.program)
        let plain = try SteeringPipeline(program: Self.program)
        for i in plain.code.stages.indices { plain.code.stages[i].guardOffset = -1 }
        let port = MemoryPort(bufferCount: 4)
        var random = SplitMix64(seed: 16)
        let firsts: [UInt8] = [0x67, 0x47, 0x80, 0x81, 0x00, 0x41, 0x61, 0x42, 0x01, 0x11, 0x15]
        var matched = Set<Int32>()
        for _ in 0..<20_000 {
            let length = Int(random.next() % 16)
            var payload = (0..<length).map { _ in random.next() % 3 == 0 ? UInt8(truncatingIfNeeded: random.next())
                                                                       : firsts[Int(random.next() % UInt64(firsts.count))] }
            if length > 12 && random.next() % 4 == 0 { payload.replaceSubrange(8..<12, with: Array("get ".utf8)) }
            if length > 6 && random.next() % 4 == 0 { payload.replaceSubrange(2..<6, with: [0, 0, 0, 1]) }
            let frame = udpFrame(bytes: payload)
            var verdicts: [SteeringPipeline.Verdict] = []
            for pipeline in [guarded, plain] {
                _ = port.inject(frame)
                let batch = PacketBatch(capacity: 1)
                _ = port.receive(queue: 0, into: batch)
                var p = batch[0]
                verdicts.append(pipeline.steer(&p))
                port.release(batch)
            }
            #expect(verdicts[0].kind == verdicts[1].kind && verdicts[0].queue == verdicts[1].queue
                    && verdicts[0].detail == verdicts[1].detail, "payload \(payload)")
            matched.insert(verdicts[0].queue)
        }
        #expect(matched.isSuperset(of: [-1, 0, 1, 2, 3, 4]), "every stage matched some frame, and some frames none")
    }
}
