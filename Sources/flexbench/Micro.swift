import ArgumentParser
import CFlexSys
import FlexIO
import FlexKVS
import FlexNIC
import FlexStorm
import FlexWire
import Foundation

/// Micro-benchmarks of the steering layer's building blocks (issue 2's targets).
struct Micro: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Steering-layer micro-benchmarks: Toeplitz hash, a 3-stage program, flexkvs's key program, FlexStorm's DCCP receive, SPSC ring.",
        discussion: """
            Each figure is the median of --runs runs. Targets on a 2-core machine (release \
            build): hash <= 15 ns, 3-stage program <= 60 ns/packet (10 GbE line rate for \
            64-byte frames is 67.2 ns), ring <= 10 ns/item in batches of 32.
            """)

    @Option(help: "Operations per run.") var iterations = 2_000_000
    @Option(help: "Runs per figure; the median is printed.") var runs = 5
    @Flag(help: "Skip the two-thread ring run.") var singleThreadOnly = false
    @Option(help: "Run only benchmarks whose name contains this text (e.g. program, ring, toeplitz).") var only: String?

    func run() throws {
        guard iterations > 0, runs > 0 else { throw ValidationError("--iterations and --runs must be positive") }
        print("flexbench micro: \(iterations) ops x \(runs) runs, median; build \(isDebugBuild ? "DEBUG (numbers meaningless)" : "release")")
        print("benchmark".padding(toLength: 50, withPad: " ", startingAt: 0) + "   ns/op   cycles/op")
        let toeplitz = ToeplitzHash()
        report("toeplitz 4-tuple hash", measure { hashTuples($0, toeplitz.hash) })
        report("toeplitz symmetric 4-tuple hash", measure { hashTuples($0, toeplitz.symmetricHash) })
        let program = try ProgramBench()
        report("3-stage program, 64 B UDP (steer)", measure(program.steer))
        report("3-stage program, 64 B UDP (burst 32 -> rings)", measure(program.burst))
        let kvs = try ProgramBench(KVSPrograms.key(port: 11211, queues: 2, own: 0, offload: false))
        report("flexkvs key program, 64 B UDP GET (burst 32)", measure(kvs.burst))
        let dccp = DCCPReceiveBench()
        report("DCCP receive, 64 B tuples (burst 32 -> acks)", measure(dccp.run))
        report("SPSC ring enqueue+dequeue, batch 32 (1 thread)", measure(ringSameThread))
        if !singleThreadOnly {
            report("SPSC ring, batch 32, producer+consumer threads", measure(ringTwoThreads))
        }
    }

    var isDebugBuild: Bool {
        var debug = false
        assert({ debug = true; return true }())
        return debug
    }

    /// Runs `body(iterations)` `runs` times; returns the median (ns/op, cycles/op).
    func measure(_ body: (Int) -> UInt64) -> (Double, Double) {
        var samples: [(Double, Double)] = []
        _ = body(min(iterations, 100_000))  // warm-up
        for _ in 0..<runs {
            let t0 = DispatchTime.now().uptimeNanoseconds
            let c0 = cflex_rdtsc()
            let sink = body(iterations)
            let c1 = cflex_rdtsc()
            let t1 = DispatchTime.now().uptimeNanoseconds
            if sink == 0xDEAD_BEEF_DEAD_BEEF { print("") }  // keep the result alive
            samples.append((Double(t1 - t0) / Double(iterations), Double(c1 &- c0) / Double(iterations)))
        }
        samples.sort { $0.0 < $1.0 }
        return samples[samples.count / 2]
    }

    func selected(_ name: String) -> Bool { only.map { name.contains($0) } ?? true }

    func report(_ name: String, _ r: @autoclosure () -> (Double, Double)) {
        guard selected(name) else { return }
        let r = r()
        print(name.padding(toLength: 50, withPad: " ", startingAt: 0)
              + String(format: "%8.2f  %10.1f", r.0, r.1))
    }

    /// Hashes `n` distinct 4-tuples with `hash`.
    @inline(__always)
    func hashTuples(_ n: Int, _ hash: (UInt32, UInt32, UInt16, UInt16) -> UInt32) -> UInt64 {
        var acc: UInt32 = 0
        var src: UInt32 = 0x0A00_0001, port: UInt16 = 1024
        for _ in 0..<n {
            acc ^= hash(src, 0xC0A8_0101, port, 11211)
            src &+= 0x9E37; port &+= 7
        }
        return UInt64(acc)
    }

    func ringSameThread(_ n: Int) -> UInt64 {
        let ring = SPSCRing<UInt64>(capacity: 1024)
        let input = UnsafeMutablePointer<UInt64>.allocate(capacity: 32)
        let output = UnsafeMutablePointer<UInt64>.allocate(capacity: 32)
        defer { input.deallocate(); output.deallocate() }
        for i in 0..<32 { input[i] = UInt64(i) }
        var sum: UInt64 = 0
        var done = 0
        while done < n {
            let k = ring.enqueue(input, count: 32)
            let m = ring.dequeue(into: output, maximum: 32)
            sum &+= output[m &- 1] &+ UInt64(k)
            done &+= m
        }
        return sum
    }

    func ringTwoThreads(_ n: Int) -> UInt64 {
        let ring = SPSCRing<UInt64>(capacity: 1024)
        let producerDone = DispatchSemaphore(value: 0)
        Thread {
            let input = UnsafeMutablePointer<UInt64>.allocate(capacity: 32)
            defer { input.deallocate() }
            var next: UInt64 = 0
            while next < UInt64(n) {
                let want = min(32, n - Int(next))
                for i in 0..<want { input[i] = next &+ UInt64(i) }
                next &+= UInt64(ring.enqueue(input, count: want))
            }
            producerDone.signal()
        }.start()
        let output = UnsafeMutablePointer<UInt64>.allocate(capacity: 32)
        defer { output.deallocate() }
        var received = 0
        var sum: UInt64 = 0
        while received < n {
            let m = ring.dequeue(into: output, maximum: 32)
            for i in 0..<m { sum &+= output[i] }
            received &+= m
        }
        producerDone.wait()
        let expected = UInt64(n) * UInt64(n - 1) / 2
        precondition(sum == expected, "ring lost or duplicated items: sum \(sum), expected \(expected)")
        return sum
    }
}

/// The 3-stage program of the benchmark over 1,024 distinct 64-byte memcached-over-UDP
/// GET frames: filter memcached UDP and strip to the payload, hash the key, redirect.
struct ProgramBench {
    static let frameLength = 64
    static let frames = 1024
    let pipeline: SteeringPipeline
    let memory: UnsafeMutableRawPointer
    let port = MemoryPort(name: "bench", bufferCount: 64)

    /// The thesis' 3-stage key-steering program (`Configs/steering/kvs-udp-key.toml`).
    static let program = SteeringProgram.thesisKeySteering()

    init(_ program: SteeringProgram = ProgramBench.program) throws {
        pipeline = try SteeringPipeline(program: program, ringCapacity: 4096)
        memory = UnsafeMutableRawPointer.allocate(byteCount: Self.frames * Self.frameLength, alignment: 64)
        for i in 0..<Self.frames {
            // 8-byte memcached UDP frame header, then "get kNNNNN\r\n", padded to 64 bytes.
            var payload: [UInt8] = [0, UInt8(i & 0xFF), 0, 0, 0, 1, 0, 0]
            payload += Array("get k\(String(format: "%05d", i))\r\n".utf8)
            payload += [UInt8](repeating: 0, count: Self.frameLength - FrameBuilder.udpHeadersLength - payload.count)
            let e = FrameBuilder.Endpoints(source: IPv4Address(10, 0, UInt8(i >> 8), UInt8(i & 0xFF)), destination: IPv4Address(10, 0, 0, 1),
                                           sourcePort: UInt16(20000 + i), destinationPort: 11211)
            try FrameBuilder.udp(into: UnsafeMutableRawBufferPointer(start: memory + i * Self.frameLength, count: Self.frameLength),
                                 endpoints: e, payload: payload)
        }
    }

    func packet(_ i: Int) -> Packet {
        Packet(owner: nil, data: memory + (i & (Self.frames - 1)) * Self.frameLength,
               length: UInt32(Self.frameLength), capacity: UInt32(Self.frameLength))
    }

    func steer(_ n: Int) -> UInt64 {
        var acc: UInt64 = 0
        for i in 0..<n {
            var p = packet(i)
            let v = pipeline.steer(&p)
            acc &+= UInt64(v.hash) &+ UInt64(v.queue)
        }
        return acc
    }

    /// Whole bursts through `process` into the rings, drained on the same thread.
    func burst(_ n: Int) -> UInt64 {
        let batch = PacketBatch(capacity: 32)
        let replies = PacketBatch(capacity: 32)
        let out = UnsafeMutablePointer<Descriptor>.allocate(capacity: 64)
        defer { out.deallocate() }
        var acc: UInt64 = 0
        var i = 0
        while i < n {
            for k in 0..<32 { batch.packets[k] = packet(i &+ k) }
            batch.count = 32
            pipeline.process(batch, port: port, replies: replies)
            for r in pipeline.rings {
                let m = r.dequeue(into: out, maximum: 64)
                if m > 0 { acc &+= UInt64(out[m - 1].hash) }
            }
            i &+= 32
        }
        return acc
    }
}

/// FlexStorm's receive path on DCCP Data frames in UDP carrying 64-byte tuples: 32
/// connections, a burst of 32 frames holding the next sequence number of each, every
/// tuple placed into one of 4 worker queues (drained after each burst, so none fills)
/// and every frame turned into its ack. Each burst's frames are copied from templates
/// and given their sequence number and DCCP checksum (the receiver rewrites them into
/// acks): that copy and checksum are part of the figure.
final class DCCPReceiveBench {
    static let connections = 32
    static let frameSize = 128
    let templates: [[UInt8]]
    let memory = UnsafeMutableRawPointer.allocate(byteCount: 32 * DCCPReceiveBench.frameSize, alignment: 64)
    let port = MemoryPort(name: "dccp-bench", bufferCount: 64)
    let queues = (0..<4).map { _ in SPSCRing<Tuple>(capacity: 256) }
    let acks = AckBoard(basePort: 7101, count: 4)
    let receiver: DCCPReceiver
    var sequence: UInt64 = 0

    init() {
        templates = (0..<Self.connections).map { c in
            var wire = [UInt8](repeating: 0, count: Tuple.wireLength)
            wire.withUnsafeMutableBytes {
                Tuple(destination: UInt16(c % 4), source: 1, kind: .user, user: UserName("user\(c)")!).encode(to: $0.baseAddress!)
            }
            var frame = [UInt8](repeating: 0, count: Self.frameSize)
            let e = FrameBuilder.Endpoints(source: IPv4Address(198, 18, 1, UInt8(2 + c % 8)), destination: IPv4Address(198, 18, 1, 1),
                                           sourcePort: 7100, destinationPort: 7100)
            let n = frame.withUnsafeMutableBytes { b in
                wire.withUnsafeBytes {
                    try! FrameBuilder.dccpData(into: b, endpoints: e, udpEncapsulated: true, dccpPorts: (UInt16(7200 + c), 7100),
                                               sequence: 1, payload: $0.baseAddress!, count: wire.count)
                }
            }
            return Array(frame[..<n])
        }
        receiver = DCCPReceiver(port: 7100, udpEncapsulated: true, queues: queues, targets: [0, 1, 2, 3], acks: acks, clock: { 0 })
    }

    func run(_ n: Int) -> UInt64 {
        let batch = PacketBatch(capacity: 32), replies = PacketBatch(capacity: 64), release = PacketBatch(capacity: 64)
        let dccpOffset = FrameBuilder.dccpOffset(udpEncapsulated: true)
        var acc: UInt64 = 0
        var sent = 0
        while sent < n {
            sequence &+= 1
            for k in 0..<32 {
                let t = templates[k]
                let data = memory + k &* Self.frameSize
                t.withUnsafeBytes { data.copyMemory(from: $0.baseAddress!, byteCount: t.count) }
                let length = t.count - dccpOffset
                let dccp = try! DCCPHeader(UnsafeMutableRawBufferPointer(start: data + dccpOffset, count: length))
                dccp.sequenceNumber = sequence
                try! dccp.updateChecksum(ip: IPv4Header(unchecked: data + EthernetHeader.length, headerLength: IPv4Header.minimumLength),
                                         packetLength: length)
                batch.packets[k] = Packet(owner: nil, data: data, length: UInt32(t.count), capacity: UInt32(Self.frameSize))
            }
            batch.count = 32
            receiver.process(batch, port: port, replies: replies, release: release)
            acc &+= UInt64(replies.count)
            replies.removeAll()
            for q in queues { while let tuple = q.dequeue() { acc &+= UInt64(tuple.destination) } }
            sent &+= 32
        }
        precondition(receiver.counters[.delivered] == UInt64(sequence) * 32, "the receive bench lost tuples")
        return acc
    }
}
