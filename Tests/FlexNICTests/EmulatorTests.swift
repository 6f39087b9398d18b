import FlexIO
import FlexConfig
import FlexNIC
import FlexTestSupport
import FlexWire
import Foundation
import Testing

@Suite struct EmulatorTests {
    /// The emulator thread steers frames to per-core rings while a second thread
    /// re-programs the redirection table; every frame arrives exactly once, on a queue
    /// the table named at some point, and nothing leaks.
    @Test func threadSteersWhileTheTableIsReprogrammed() throws {
        let port = MemoryPort(bufferCount: 8192)
        let program = SteeringProgram(name: "rss", queues: 2, stages: [
            .init("rss", actions: [.hash(.fourTuple), .writeHash, .redirect]),
        ])
        let pipeline = try SteeringPipeline(program: program, ringCapacity: 8192)
        let emulator = SteeringEmulator(port: port, pipeline: pipeline)
        emulator.start()
        let total = 4000
        let flipper = Thread {
            for i in 0..<200 {
                pipeline.redirection.update(Array(repeating: i % 2, count: 128))
                usleep(100)
            }
        }
        flipper.start()
        for i in 0..<total {
            while !port.inject(udpFrame("n\(i)", sport: UInt16(1000 + i % 5000))) { usleep(100) }
        }
        var seen = Set<String>()
        let out = UnsafeMutablePointer<Descriptor>.allocate(capacity: 64)
        defer { out.deallocate() }
        let deadline = Date().addingTimeInterval(20)
        while seen.count < total && Date() < deadline {
            for q in 0..<2 {
                let n = pipeline.rings[q].dequeue(into: out, maximum: 64)
                for k in 0..<n {
                    let text = String(decoding: UnsafeRawBufferPointer(start: out[k].packet.data + 42, count: Int(out[k].packet.length) - 42), as: UTF8.self)
                    #expect(seen.insert(text).inserted, "duplicate \(text)")
                    port.release(out[k].packet)
                }
            }
        }
        emulator.stop()
        #expect(seen.count == total)
        let c = pipeline.counters.snapshot
        #expect(c.packets == UInt64(total))
        #expect(c.queueSteered[0] + c.queueSteered[1] == UInt64(total))
        #expect(port.pool.available == port.pool.bufferCount)
    }

    @Test func inlinePollRepliesThroughThePort() throws {
        let port = MemoryPort()
        let pipeline = try SteeringPipeline(program: ProgramFile.parse("""
            queues = 1
            [[stage]]
            actions = ["reply swap-eth swap-ip swap-ports"]
            """))
        let emulator = SteeringEmulator(port: port, pipeline: pipeline)
        for i in 0..<50 { port.inject(udpFrame("r\(i)")) }
        while emulator.poll() > 0 {}
        let sent = port.takeTransmitted()
        #expect(sent.count == 50)
        #expect(try sent.allSatisfy { try Frames.parse($0).destinationPort == 40000 })
        #expect(port.pool.available == port.pool.bufferCount)
    }
}
