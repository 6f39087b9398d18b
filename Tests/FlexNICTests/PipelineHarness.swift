import FlexIO
import FlexNIC
import FlexTestSupport
import FlexWire

/// Runs a program over frames injected into a memory port and collects what came out
/// of each ring, the replies and the counters.
final class PipelineHarness {
    let port: MemoryPort
    let pipeline: SteeringPipeline
    let replies = PacketBatch(capacity: 64)
    let batch = PacketBatch(capacity: 64)

    init(_ program: SteeringProgram, ringCapacity: Int = 64, logs: [LogSegments]? = nil, bufferCount: Int = 256) throws {
        port = MemoryPort(bufferCount: bufferCount)
        pipeline = try SteeringPipeline(program: program, ringCapacity: ringCapacity, logs: logs)
    }

    /// Sends `frames` through the pipeline as one burst.
    func run(_ frames: [[UInt8]]) {
        for f in frames { port.inject(f) }
        _ = port.receive(queue: 0, into: batch)
        pipeline.process(batch, port: port, replies: replies)
    }

    /// Everything waiting on ring `r` (the slow path is `program.queues`).
    func drain(_ r: Int) -> [Descriptor] {
        var out: [Descriptor] = []
        while let d = pipeline.rings[r].dequeue() { out.append(d) }
        return out
    }

    func bytes(_ d: Descriptor) -> [UInt8] { d.packet.byteArray }

    /// Frees descriptors' frames (those that have one).
    func release(_ ds: [Descriptor]) {
        for d in ds where d.packet.owner != nil { port.release(d.packet) }
    }

    var counters: SteeringCounters.Snapshot { pipeline.counters.snapshot }
}

func udpFrame(_ payload: String, src: String = "10.0.0.1", dst: String = "10.0.0.2", sport: UInt16 = 40000,
              dport: UInt16 = 11211) -> [UInt8] {
    udpFrame(bytes: Array(payload.utf8), src: src, dst: dst, sport: sport, dport: dport)
}

func udpFrame(bytes payload: [UInt8], src: String = "10.0.0.1", dst: String = "10.0.0.2", sport: UInt16 = 40000,
              dport: UInt16 = 11211) -> [UInt8] {
    var e = Frames.endpoints
    e.source = IPv4Address(src)!
    e.destination = IPv4Address(dst)!
    e.sourcePort = sport
    e.destinationPort = dport
    return Frames.udp(payload, e)
}
