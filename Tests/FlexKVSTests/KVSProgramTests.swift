@testable import FlexKVS
import FlexConfig
import FlexIO
import FlexNIC
import FlexTestSupport
import FlexWire
import Testing

/// On an Ethernet port (`--io dpdk`) the server's programs serve only frames sent to
/// its own address; other hosts' traffic and non-IP frames take the slow path.
@Suite struct KVSProgramTests {
    static let server = Frames.endpoints.destination

    func verdict(_ program: SteeringProgram, _ frame: [UInt8], logs: [LogSegments]? = nil) throws -> SteeringPipeline.Verdict {
        let pipeline = try SteeringPipeline(program: program, logs: logs)
        var bytes = frame
        return bytes.withUnsafeMutableBytes { b in
            var p = Packet(owner: nil, data: b.baseAddress!, length: UInt32(b.count), capacity: UInt32(b.count))
            return pipeline.steer(&p)
        }
    }

    /// The reply-offload stage answers exactly a one-datagram `get <key>\r\n` whose key
    /// the table holds (every length up to 250 bytes, the key's end found 8 bytes at a
    /// time); any other shape, or a key it does not hold, goes on to a worker.
    @Test func theOffloadStageAnswersOnlyAWholeGetOfAKeyItHolds() throws {
        let table = ReplyTable(slots: 64)
        let pipeline = try SteeringPipeline(program: KVSPrograms.key(port: 11211, queues: 2, own: 0, offload: true), replyTable: table)
        let header: [UInt8] = [0, 1, 0, 0, 0, 1, 0, 0]
        func steer(_ request: String) -> (SteeringPipeline.Verdict, [UInt8]) {
            let frame = Frames.udp(header + Array(request.utf8))
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 2048, alignment: 64)
            defer { buffer.deallocate() }
            buffer.copyBytes(from: frame)
            var p = Packet(owner: nil, data: buffer.baseAddress!, length: UInt32(frame.count), capacity: 2048)
            let v = pipeline.steer(&p)
            return (v, Array(UnsafeRawBufferPointer(p.bytes)[FrameBuilder.udpHeadersLength...]))
        }
        for length in [1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 250] {
            let key = String((0..<length).map { Character(UnicodeScalar(UInt8(0x61 + $0 % 26))) })
            let reply = Array("VALUE \(key) 0 1\r\nx\r\nEND\r\n".utf8)
            Array(key.utf8).withUnsafeBytes { k in
                reply.withUnsafeBytes { _ = table.install(hash: KVStore.hash(k), key: k, reply: $0, epoch: 0) }
            }
            let (answered, payload) = steer("get \(key)\r\n")
            #expect(answered.kind == .reply && payload == header + reply, "a \(length)-byte key")
            for other in ["get \(key)", "get \(key)\n", "get \(key) \r\n", "get \(key)x\r\n", "get  \(key)\r\n",
                          "get \(key) \(key)\r\n", "gets \(key)\r\n"] {
                #expect(steer(other).0.kind != .reply, "\(other.debugDescription)")
            }
        }
        #expect(steer("get \(String(repeating: "z", count: 251))\r\n").0.kind != .reply)
    }

    /// dma steering's program hands the worker a lone binary GET through its own stage,
    /// whose index the descriptor carries (`Worker.serveParsedGet` answers those); any
    /// other binary request, or a GET in a datagram of several, takes the ordinary
    /// binary stage. Key steering's program has no such stage.
    @Test func onlyALoneBinaryGetTakesTheParsedGetStage() throws {
        let dma = KVSPrograms.key(port: 11211, queues: 2, own: 0, offload: false, placing: true)
        let parsed = try #require(dma.stages.firstIndex { $0.name == KVSPrograms.parsedGetStage })
        let binary = try #require(dma.stages.firstIndex { $0.name == "binary" })
        #expect(!KVSPrograms.key(port: 11211, queues: 2, own: 0, offload: false).stages.contains { $0.name == KVSPrograms.parsedGetStage })
        func request(opcode: UInt8, extras: [UInt8] = [], key: String = "k1", count: UInt8 = 1) -> [UInt8] {
            let k = Array(key.utf8), body = extras.count + k.count
            return [0, 9, 0, 0, 0, count, 0, 0, 0x80, opcode, 0, UInt8(k.count), UInt8(extras.count), 0, 0, 0, 0, 0, 0, UInt8(body)]
                + [UInt8](repeating: 0, count: 12) + extras + k
        }
        let logs = [LogSegments(count: 1, size: 4096), LogSegments(count: 1, size: 4096)]
        let get = try verdict(dma, Frames.udp(request(opcode: 0x00)), logs: logs)
        #expect(get.kind == .queue && Int(get.detail) == parsed && get.hash == Array("k1".utf8).withUnsafeBytes { KVStore.hash($0) })
        for (other, shape) in [(request(opcode: 0x09), "GETQ"), (request(opcode: 0x0C), "GETK"),
                               (request(opcode: 0x00, extras: [0, 0, 0, 0]), "GET with extras"),
                               (request(opcode: 0x00, count: 2), "the first of two datagrams")] {
            let v = try verdict(dma, Frames.udp(other), logs: logs)
            #expect(v.kind == .queue && Int(v.detail) == binary, "\(shape)")
        }
    }

    @Test(arguments: [false, true])
    func framesForOtherHostsTakeTheSlowPath(keySteering: Bool) throws {
        let base = keySteering ? KVSPrograms.key(port: 11211, queues: 2, own: 0, offload: false)
                               : KVSPrograms.flow(protocolNumber: 17, port: 11211, queues: 2, own: 0)
        let program = KVSPrograms.addressed(to: Self.server, base)
        let request = [0, 1, 0, 0, 0, 1, 0, 0] + Array("get k\r\n".utf8)
        #expect(try verdict(program, Frames.udp(request)).kind == .queue)
        var elsewhere = Frames.endpoints
        elsewhere.destination = IPv4Address(10, 0, 0, 3)
        let other = try verdict(program, Frames.udp(request, elsewhere))
        #expect(other.kind == .slowPath && other.detail == SlowPathReason.rule.rawValue)
        // The unrestricted program would have served it: the address is what decides.
        #expect(try verdict(base, Frames.udp(request, elsewhere)).kind == .queue)
        var arp = [UInt8](repeating: 0, count: 60)
        _ = arp.withUnsafeMutableBytes { ARP.writeRequest(into: $0, from: Frames.endpoints.sourceMAC, address: Frames.endpoints.source, asking: Self.server) }
        #expect(try verdict(program, arp).kind == .slowPath)
    }

    /// `Configs/steering/flexkvs-udp-key.toml` is the program a worker really runs
    /// (`flexbench programs` writes it), and every key program survives the file format.
    @Test func theShippedFileIsWhatWorkersRun() throws {
        let file = try ProgramFile.load(path: "Configs/steering/flexkvs-udp-key.toml")
        #expect(file == ProgramFile.canonical(KVSPrograms.key(port: 11211, queues: 2, own: 0, offload: true)))
        for offload in [false, true] {
            for placing in [false, true] {
                let p = KVSPrograms.addressed(to: Self.server, KVSPrograms.key(port: 11211, queues: 4, own: 1, offload: offload, placing: placing))
                #expect(try ProgramFile.parse(ProgramFile.write(p)) == ProgramFile.canonical(p))
            }
        }
    }
}
