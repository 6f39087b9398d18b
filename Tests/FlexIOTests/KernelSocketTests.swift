@testable import FlexIO
import FlexNIC
import FlexTestSupport
import FlexWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A blocking TCP client on loopback, for driving the server side under test.
final class TCPClient {
    let fd: Int32

    init(port: UInt16) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = IPv4Address.loopback.value.bigEndian
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else { throw PortError("connect: \(errno)") }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    func send(_ s: String) { _ = Array(s.utf8).withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) } }

    /// Reads until `count` bytes arrived, EOF or the timeout; returns what came.
    func receive(_ count: Int) -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while out.count < count {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { break }
            out += buf[..<n]
        }
        return out
    }
}

@Suite(.serialized, .tags(.integration)) struct KernelSocketIntegrationTests {
    static let reflect = SteeringProgram(name: "reflect", queues: 1, stages: [
        .init("reflect", actions: [.reply([.swapEthernet, .swapIPv4, .swapPorts])]),
    ])

    /// Two SO_REUSEPORT queues, each with an emulator running the reflect program;
    /// four clients send 100 datagrams each and get every one back, payload intact.
    @Test func udpRoundTripThroughThePipeline() throws {
        let server = try KernelUDPPort(address: .loopback, port: 0, queues: 2)
        let emulators = try (0..<2).map { q in
            SteeringEmulator(port: server, pipeline: try SteeringPipeline(program: Self.reflect), rxQueue: q, txQueue: q)
        }
        emulators.forEach { $0.start() }
        defer { emulators.forEach { $0.stop() } }
        var received = 0
        var mismatched = 0
        for c in 0..<4 {
            let client = try KernelUDPPort(address: .loopback, port: 0)
            let batch = PacketBatch(capacity: 32)
            for i in 0..<100 {
                #expect(client.allocate(count: 1, into: batch) == 1)
                var p = batch[0]
                let e = FrameBuilder.Endpoints(source: .loopback, destination: .loopback, sourcePort: client.port, destinationPort: server.port)
                p.length = UInt32(try FrameBuilder.udp(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                       endpoints: e, payload: Array("client \(c) datagram \(i)".utf8)))
                batch[0] = p
                #expect(client.transmit(queue: 0, batch) == 1)
            }
            let deadline = Date().addingTimeInterval(5)
            var got = 0
            while got < 100 && Date() < deadline {
                client.wait(queue: 0, timeoutMilliseconds: 10)
                _ = client.receive(queue: 0, into: batch)
                for i in 0..<batch.count {
                    // The port vouches for the header it wrote, and it is right.
                    #expect(batch[i].flags.contains(.headerChecksumGood))
                    let f = try Frames.parse(batch[i].byteArray)
                    let text = String(decoding: batch[i].byteArray[Int(f.payloadOffset)...], as: UTF8.self)
                    if !text.hasPrefix("client \(c) datagram ") || f.sourcePort != server.port { mismatched += 1 }
                }
                got += batch.count
                client.release(batch)
            }
            received += got
        }
        #expect(received == 400)
        #expect(mismatched == 0)
        let replied = emulators.reduce(UInt64(0)) { $0 + $1.pipeline.counters.snapshot.replied }
        #expect(replied == 400)
        #expect(server.statistics.receivedPackets == 400 && server.statistics.transmittedPackets == 400)
    }

    /// A port another server holds is refused, as memcached refuses it, although the
    /// queues of one port share it (SO_REUSEPORT): a second server must not take half
    /// the first one's traffic.
    @Test func aPortInUseIsRefusedButSharedByOnesOwnQueues() throws {
        let tcp = try KernelTCPPort(port: 0, queues: 2)
        let udp = try KernelUDPPort(port: 0, queues: 2)
        #expect(throws: PortError.self) { try KernelTCPPort(port: tcp.port, queues: 2) }
        #expect(throws: PortError.self) { try KernelUDPPort(port: udp.port, queues: 1) }
        do {
            _ = try KernelTCPPort(port: tcp.port)
        } catch {
            #expect("\(error)".contains("Address already in use"))
        }
    }

    /// Writes one UDP frame per `(port, payload)` into `batch` from `sender`'s buffers.
    func frames(_ datagrams: [(port: UInt16, payload: [UInt8])], from sender: KernelUDPPort, to host: IPv4Address = .loopback,
                into batch: PacketBatch) throws {
        #expect(sender.allocate(count: datagrams.count, into: batch) == datagrams.count)
        for (i, d) in datagrams.enumerated() {
            var p = batch[i]
            let e = FrameBuilder.Endpoints(source: sender.address, destination: host, sourcePort: sender.port, destinationPort: d.port)
            p.length = UInt32(try FrameBuilder.udp(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                   endpoints: e, payload: d.payload))
            batch[i] = p
        }
    }

    /// Runs of datagrams to one peer leave as one segmented message each (`UDP_SEGMENT`),
    /// and arrive as the datagrams they were, in order: runs of equal lengths ending in a
    /// shorter one, a longer one that must start a run of its own, runs broken by another
    /// peer, a multi-datagram reply's 1,400-byte pieces, and empty datagrams (one that
    /// ended a run would be lost: the kernel cuts nothing for it).
    @Test func runsToOnePeerArriveAsTheDatagramsTheyWere() throws {
        let a = try KernelUDPPort(address: .loopback, port: 0, bufferCount: 64)
        let b = try KernelUDPPort(address: .loopback, port: 0, bufferCount: 64)
        let sender = try KernelUDPPort(address: .loopback, port: 0, bufferCount: 64)
        let plan: [(KernelUDPPort, Int)] = [(a, 100), (a, 100), (a, 100), (a, 40), (b, 100), (a, 100), (a, 200),
                                            (a, 1400), (a, 1400), (a, 1400), (a, 700), (b, 0), (b, 30), (b, 30), (b, 30), (b, 0)]
        let datagrams = plan.enumerated().map { i, d in (port: d.0.port, payload: (0..<d.1).map { UInt8(truncatingIfNeeded: i &* 31 &+ $0) }) }
        let batch = PacketBatch(capacity: 32)
        try frames(datagrams, from: sender, into: batch)
        #expect(sender.transmit(queue: 0, batch) == plan.count)
        #expect(sender.segmenting[0] == 1)
        #expect(sender.statistics.transmittedPackets == UInt64(plan.count) && sender.statistics.transmitErrors == 0)
        #expect(sender.pool.available == 64)
        for receiver in [a, b] {
            let expected = datagrams.filter { $0.port == receiver.port }.map(\.payload)
            var got: [[UInt8]] = []
            let deadline = Date().addingTimeInterval(5)
            while got.count < expected.count && Date() < deadline {
                receiver.wait(queue: 0, timeoutMilliseconds: 10)
                _ = receiver.receive(queue: 0, into: batch)
                got += (0..<batch.count).map { Array(batch[$0].byteArray[FrameBuilder.udpHeadersLength...]) }
                receiver.release(batch)
            }
            #expect(got == expected)
        }
    }

    /// A route that refuses segmentation (here: segments longer than its MTU, which the
    /// kernel would have to fragment) turns it off for the queue, and the batch still
    /// leaves, each datagram alone.
    @Test(.enabled(if: canMakeNamespaces)) func aRouteThatRefusesSegmentationGetsEachDatagramAlone() throws {
        let ns = try NetworkNamespace("flexio-gso")
        try ip("-n \(ns.name) link add d0 mtu 600 type veth peer name d1 mtu 600")
        try ip("-n \(ns.name) link set d1 up")
        try ip("-n \(ns.name) link set d0 up")
        try ip("-n \(ns.name) addr add 198.18.11.1/24 dev d0")
        let (sent, segmenting, statistics) = try ns.run {
            let sender = try KernelUDPPort(address: IPv4Address(198, 18, 11, 1), port: 0, bufferCount: 16)
            let batch = PacketBatch(capacity: 8)
            try self.frames((0..<3).map { _ in (port: 9, payload: [UInt8](repeating: 7, count: 1000)) },
                            from: sender, to: IPv4Address(198, 18, 11, 2), into: batch)
            return (sender.transmit(queue: 0, batch), sender.segmenting[0], sender.statistics)
        }
        #expect(sent == 3)
        #expect(segmenting == 0)
        #expect(statistics.transmittedPackets == 3 && statistics.transmitErrors == 0)
    }

    /// A datagram longer than a buffer is dropped and counted; the ones around it are
    /// delivered, and every buffer comes back to the pool exactly once (16 distinct
    /// buffers to hand out again).
    @Test func oversizedDatagramsAreCountedNotDelivered() throws {
        let server = try KernelUDPPort(address: .loopback, port: 0, bufferCount: 16, bufferSize: 256)
        sendDatagrams([100, 1000, 50, 2000, 2000, 70].map { [UInt8](repeating: UInt8($0 % 251), count: $0) }, to: server.port)
        let batch = PacketBatch(capacity: 8)
        server.wait(queue: 0, timeoutMilliseconds: 1000)
        usleep(20_000)
        _ = server.receive(queue: 0, into: batch)
        #expect((0..<batch.count).map { batch[$0].byteArray[FrameBuilder.udpHeadersLength...] }
                == [100, 50, 70].map { [UInt8](repeating: UInt8($0 % 251), count: $0)[...] })
        #expect(server.statistics.receiveDrops == 3)
        server.release(batch)
        #expect(server.pool.available == 16)
        let all = PacketBatch(capacity: 16)
        #expect(server.allocate(count: 16, into: all) == 16)
        #expect(Set((0..<all.count).map { UInt(bitPattern: all[$0].data) }).count == 16)
        server.release(all)
    }

    /// After a lone datagram a receive asks for 4, then twice what it got, so a burst
    /// of 100 arrives as 4, 8, 16, 32, 40, in order, none lost, every buffer returned.
    @Test func aReceiveAsksForTwiceWhatTheLastOneGot() throws {
        let server = try KernelUDPPort(address: .loopback, port: 0, bufferCount: 256)
        let batch = PacketBatch(capacity: 64)
        func receiveAll(expecting total: Int) -> (sizes: [Int], payloads: [String]) {
            var sizes: [Int] = [], payloads: [String] = []
            let deadline = Date().addingTimeInterval(5)
            while payloads.count < total && Date() < deadline {
                server.wait(queue: 0, timeoutMilliseconds: 10)
                let n = server.receive(queue: 0, into: batch)
                guard n > 0 else { continue }
                sizes.append(n)
                for i in 0..<n { payloads.append(String(decoding: batch[i].byteArray[FrameBuilder.udpHeadersLength...], as: UTF8.self)) }
                server.release(batch)
            }
            return (sizes, payloads)
        }
        sendDatagrams([Array("lone".utf8)], to: server.port)
        #expect(receiveAll(expecting: 1).payloads == ["lone"])
        let burst = (0..<100).map { "datagram \($0)" }
        sendDatagrams(burst.map { Array($0.utf8) }, to: server.port)
        usleep(20_000)
        let (sizes, payloads) = receiveAll(expecting: 100)
        #expect(sizes == [4, 8, 16, 32, 40])
        #expect(payloads == burst)
        #expect(server.statistics.receivedPackets == 101 && server.statistics.receiveDrops == 0)
        #expect(server.pool.available == 256)
    }

    /// The transmit paths' fixed-offset read of a frame agrees with the parser wherever
    /// it answers, and answers for every frame FrameBuilder builds: 20,000 seeded
    /// frames each for UDP and TCP, most with header bytes or the length changed.
    @Test func aBuiltFrameIsReadAsTheParserReadsIt() throws {
        try checkFastRead(headers: FrameBuilder.udpHeadersLength,
                          build: { try FrameBuilder.udp(into: $0, endpoints: $1, payload: $2) },
                          agree: { p in
                              let fast = KernelUDPPort.builtDatagram(p), parsed = KernelUDPPort.parsedDatagram(p)
                              guard let fast else { return nil }
                              return fast.payloadOffset == parsed?.payloadOffset && fast.payloadLength == parsed?.payloadLength
                                  && fast.destination == parsed?.destination && fast.port == parsed?.port
                          })
        try checkFastRead(headers: FrameBuilder.tcpHeadersLength,
                          build: { b, e, payload in
                              try FrameBuilder.tcp(into: b, endpoints: e, payload: payload, flags: payload.count % 3 == 0 ? [.fin, .ack] : [.psh, .ack])
                          },
                          agree: { p in
                              let fast = KernelTCPPort.builtSegment(p), parsed = KernelTCPPort.parsedSegment(p)
                              guard let fast else { return nil }
                              return fast.payloadOffset == parsed?.payloadOffset && fast.payloadLength == parsed?.payloadLength
                                  && fast.fin == parsed?.fin
                          })
    }

    /// Builds seeded frames, changes most (header bytes, length), and asks `agree`
    /// whether the fast read agrees with the parser (nil: no fast answer).
    func checkFastRead(headers: Int, build: (UnsafeMutableRawBufferPointer, FrameBuilder.Endpoints, [UInt8]) throws -> Int,
                       agree: (Packet) -> Bool?) throws {
        var rng = SplitMix64(seed: 16)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 64)
        defer { buffer.deallocate() }
        var fastAnswers = 0
        for trial in 0..<20_000 {
            let payload = (0..<rng.next(below: 1401)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let e = FrameBuilder.Endpoints(source: IPv4Address(UInt32(truncatingIfNeeded: rng.next())),
                                           destination: IPv4Address(UInt32(truncatingIfNeeded: rng.next())),
                                           sourcePort: UInt16(truncatingIfNeeded: rng.next()),
                                           destinationPort: UInt16(truncatingIfNeeded: rng.next()))
            var length = try build(buffer, e, payload)
            let pristine = trial % 4 == 0
            if !pristine {
                for _ in 0...rng.next(below: 3) {
                    buffer[rng.next(below: headers)] = UInt8(truncatingIfNeeded: rng.next())
                }
                if rng.next(below: 2) == 0 { length = max(0, length + rng.next(below: 17) - 8) }
            }
            let p = Packet(owner: nil, data: buffer.baseAddress!, length: UInt32(length), capacity: 2048)
            let agreed = agree(p)
            if pristine { #expect(agreed != nil, "a built frame takes the fast path") }
            if let agreed {
                fastAnswers += 1
                #expect(agreed, "trial \(trial)")
            }
        }
        #expect(fastAnswers > 5_000)
    }

    /// Echo server: emulator steers TCP data to queue 0, the test thread answers each
    /// request on the connection it came from, upper-cased.
    @Test func tcpRoundTripKeepsConnectionsApart() throws {
        let server = try KernelTCPPort(address: .loopback, port: 0)
        let pipeline = try SteeringPipeline(program: SteeringProgram(name: "tcp", queues: 1, stages: [
            .init("tcp", fields: [FieldMatch(.ipProtocol, .exact(6))], actions: [.strip(.l4), .toQueue(0)]),
        ]))
        let emulator = SteeringEmulator(port: server, pipeline: pipeline)
        emulator.start()
        defer { emulator.stop() }
        let app = EchoApp(port: server, ring: pipeline.rings[0])
        app.start()
        defer { app.stop() }
        let clients = try (0..<3).map { _ in try TCPClient(port: server.port) }
        for (i, c) in clients.enumerated() { c.send("hello from \(i)\n") }
        for (i, c) in clients.enumerated() {
            let expected = "HELLO FROM \(i)\n"
            #expect(String(decoding: c.receive(expected.utf8.count), as: UTF8.self) == expected)
        }
        #expect(server.openConnections == 3)
    }

    @Test func connectionLimitRefusesTheExtraClient() throws {
        let server = try KernelTCPPort(address: .loopback, port: 0, maxConnections: 1)
        let pipeline = try SteeringPipeline(program: SteeringProgram(name: "tcp", queues: 1, stages: [.init("all", actions: [.toQueue(0)])]))
        let emulator = SteeringEmulator(port: server, pipeline: pipeline)
        emulator.start()
        defer { emulator.stop() }
        let first = try TCPClient(port: server.port)
        usleep(50_000)
        let second = try TCPClient(port: server.port)
        #expect(second.receive(1).isEmpty)  // closed by the server
        #expect(server.refusedConnections == 1)
        _ = first
    }

    /// A client that sends a request and never reads: the server's pending output is
    /// capped; past the cap the connection is closed and counted.
    @Test func clientThatNeverReadsIsCutOff() throws {
        let server = try KernelTCPPort(address: .loopback, port: 0, maxPendingOutput: 64 * 1024)
        let batch = PacketBatch(capacity: 32)
        let client = try TCPClient(port: server.port)
        client.send("give me everything\n")
        var request: Packet?
        let deadline = Date().addingTimeInterval(5)
        while request == nil && Date() < deadline {
            server.wait(queue: 0, timeoutMilliseconds: 10)
            _ = server.receive(queue: 0, into: batch)
            if batch.count > 0 { request = batch[0] }
        }
        let flow = try #require(request).flow
        server.release(batch)
        let chunk = [UInt8](repeating: 0x41, count: 1400)
        /// Puts one TCP frame carrying `chunk` for `flow` into `batch`.
        func frameForFlow() throws {
            _ = server.allocate(count: 1, into: batch)
            var p = batch[0]
            p.length = UInt32(try FrameBuilder.tcp(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                   endpoints: Frames.endpoints, payload: chunk))
            p.flow = flow
            batch[0] = p
        }
        var sent = 0
        while server.overrunConnections == 0 && sent < 100_000 {
            try frameForFlow()
            _ = server.transmit(queue: 0, batch)
            sent += 1
        }
        #expect(server.overrunConnections == 1)
        #expect(server.openConnections == 0)
        // Later frames for the dead connection are counted as errors, not crashes.
        try frameForFlow()
        let errors = server.statistics.transmitErrors
        _ = server.transmit(queue: 0, batch)
        #expect(server.statistics.transmitErrors == errors + 1)
    }
}

/// Answers each TCP payload on its connection, upper-cased (a stand-in application).
final class EchoApp: @unchecked Sendable {
    let port: KernelTCPPort
    let ring: DescriptorRing
    let done = DispatchSemaphore(value: 0)
    var running = true
    let lock = NSLock()

    init(port: KernelTCPPort, ring: DescriptorRing) {
        self.port = port
        self.ring = ring
    }

    func start() {
        Thread { [self] in
            let out = PacketBatch(capacity: 1)
            while lock.withLock({ running }) {
                guard let d = ring.dequeue() else { usleep(200); continue }
                defer { port.release(d.packet) }
                let text = String(decoding: UnsafeRawBufferPointer(d.payload), as: UTF8.self)
                guard !text.isEmpty, port.allocate(count: 1, into: out) == 1,
                      let f = try? ParsedFrame(parsing: d.packet.bytes) else { continue }
                var p = out[0]
                let e = FrameBuilder.Endpoints(source: IPv4Address(f.destinationAddress), destination: IPv4Address(f.sourceAddress),
                                               sourcePort: f.destinationPort, destinationPort: f.sourcePort)
                p.length = UInt32((try? FrameBuilder.tcp(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                          endpoints: e, payload: Array(text.uppercased().utf8))) ?? 0)
                p.flow = d.packet.flow
                out[0] = p
                _ = port.transmit(queue: 0, out)
            }
            done.signal()
        }.start()
    }

    func stop() {
        lock.withLock { running = false }
        done.wait()
    }
}
