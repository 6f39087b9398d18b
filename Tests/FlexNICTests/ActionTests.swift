import FlexIO
import FlexConfig
import FlexNIC
import FlexTestSupport
import FlexWire
import Foundation
import Testing

@Suite struct ReplyActionTests {
    typealias Stage = SteeringProgram.Stage

    @Test func replySwapsEverythingAndFixesChecksums() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [
            Stage("echo", actions: [.reply([.swapEthernet, .swapIPv4, .swapPorts, .set(.sourcePort, 7)])]),
        ]))
        h.run([udpFrame("ping", src: "10.1.1.1", dst: "10.2.2.2", sport: 5555, dport: 11211)])
        #expect(h.replies.count == 1)
        let out = h.replies[0].byteArray
        let f = try Frames.parse(out)  // verifies the IPv4 header checksum
        #expect(IPv4Address(f.sourceAddress) == IPv4Address("10.2.2.2") && IPv4Address(f.destinationAddress) == IPv4Address("10.1.1.1"))
        #expect(f.sourcePort == 7 && f.destinationPort == 5555)
        #expect(Array(out[0..<6]) == [2, 0, 0, 0, 0, 1] && Array(out[6..<12]) == [2, 0, 0, 0, 0, 2])
        var copy = out
        try copy.withUnsafeMutableBytes { b in
            let ip = try IPv4Header(UnsafeMutableRawBufferPointer(rebasing: b[14...]))
            #expect(UDPHeader(unchecked: b.baseAddress! + 34).verifyChecksum(ip: ip))
        }
        #expect(h.counters.replied == 1)
        h.port.release(h.replies)
    }

    @Test func truncateShortensLengthsConsistently() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [
            Stage("cut", actions: [.reply([.swapIPv4, .swapPorts, .truncatePayload(3)])]),
        ]))
        h.run([udpFrame("abcdefgh")])
        let out = h.replies[0].byteArray
        let f = try Frames.parse(out)
        #expect(out.count == 42 + 3 && f.payloadLength == 3 && Array(out[42...]) == Array("abc".utf8))
        h.port.release(h.replies)
    }

    @Test func dccpDataBecomesItsAck() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [
            Stage("ack", fields: [FieldMatch(.dccpType, .exact(2))], actions: [.reply([.swapEthernet, .swapIPv4, .swapPorts, .dccpAck])]),
        ]))
        h.run([Frames.dccp(.data, sequence: 0x0102_0304_0506, payload: Array("tuple payload".utf8))])
        #expect(h.replies.count == 1)
        var out = h.replies[0].byteArray
        let f = try Frames.parse(out)
        #expect(f.dccpType == DCCPHeader.PacketType.ack.rawValue && f.payloadLength == 0)
        #expect(f.sourcePort == 11211 && f.destinationPort == 40000)
        try out.withUnsafeMutableBytes { b in
            let ip = try IPv4Header(UnsafeMutableRawBufferPointer(rebasing: b[14...]))
            let d = try DCCPHeader(UnsafeMutableRawBufferPointer(rebasing: b[34...]))
            #expect(d.acknowledgementNumber == 0x0102_0304_0506)
            #expect(throws: Never.self) { try d.verifyChecksum(ip: ip, packetLength: b.count - 34) }
        }
        h.port.release(h.replies)
    }

    @Test func impossibleRepliesGoToTheSlowPath() throws {
        let h = try PipelineHarness(SteeringProgram(name: "t", queues: 1, stages: [Stage("ack", actions: [.reply([.dccpAck])])]))
        h.run([udpFrame("not dccp")])
        #expect(h.replies.isEmpty)
        #expect(h.drain(1).count == 1)
        #expect(h.counters.replyErrors == 1)
    }
}

@Suite struct LogActionTests {
    typealias Stage = SteeringProgram.Stage

    func program() -> SteeringProgram {
        SteeringProgram(name: "dma", queues: 2, stages: [
            Stage("set", payload: [PayloadMatch(offset: 0, text: "set ")],
                  actions: [.hash(.payloadToken(offset: 4, maxLength: 250)), .writeHash, .redirect, .appendToLog(offset: 4, length: nil)]),
        ])
    }

    @Test func recordsLandInTheOwningCoresSegment() throws {
        let logs = [LogSegments(count: 2, size: 4096), LogSegments(count: 2, size: 4096)]
        let h = try PipelineHarness(program(), logs: logs)
        h.run([udpFrame("set alpha 1\r\n"), udpFrame("set beta 2\r\n")])
        var records: [String] = []
        for q in 0..<2 {
            for d in h.drain(q) {
                #expect(d.kind == .logRecord && d.packet.owner != nil)  // the frame comes along
                #expect(h.pipeline.redirection.queue(for: d.hash) == q)
                let record = try #require(d.record)
                let at = try #require(logs[q].locate(record))  // after the length word, 8-aligned records
                #expect(at.slot == 0 && at.offset % 8 == 4)
                records.append(String(decoding: UnsafeRawBufferPointer(start: record, count: LogSegments.recordLength(record)), as: UTF8.self))
                h.release([d])
            }
        }
        #expect(records.sorted() == ["alpha 1\r\n", "beta 2\r\n"])
        #expect(h.port.pool.available == h.port.pool.bufferCount)  // every frame handed back once
        #expect(h.counters.logged == 2)
    }

    /// A "segment full" notice that finds its core's ring full is held and goes out,
    /// in order, with a later burst: dropped, it would leave the segment with the core
    /// for good, and every record after the last segment to the slow path.
    @Test func aNoticeThatFindsTheRingFullIsDeliveredLater() throws {
        let logs = [LogSegments(count: 2, size: 256)]
        let p = SteeringProgram(name: "dma", queues: 1, stages: [Stage("all", actions: [.toQueue(0), .appendToLog(offset: 0, length: nil)])])
        let h = try PipelineHarness(p, ringCapacity: 2, logs: logs)
        let value = String(repeating: "v", count: 100)  // 104-byte records: two per segment
        h.run((0..<2).map { _ in udpFrame(value) })      // the ring is full
        h.run([udpFrame(value)])                         // segment 0 full: notice and record refused
        #expect(h.counters.queueDroppedFull == [1, 0])  // the record (queue 0, then the slow path); the notice waits
        let first = h.drain(0)
        #expect(first.map(\.kind) == [.logRecord, .logRecord])
        h.release(first)
        h.run([udpFrame(value)])
        let later = h.drain(0)
        #expect(later.map(\.kind) == [.segmentFull, .logRecord])
        #expect(later.first?.packet.flow == 0 && later.first?.packet.length == 2 * 104)
        h.release(later)
        #expect(h.port.pool.available == h.port.pool.bufferCount)
    }

    @Test func fullSegmentsAreAnnouncedAndRecycled() throws {
        // One queue, two 256-byte segments; 100-byte payloads make 104-byte records
        // (4-byte length, padded to 8): two per segment.
        let logs = [LogSegments(count: 2, size: 256)]
        let p = SteeringProgram(name: "dma", queues: 1, stages: [Stage("all", actions: [.toQueue(0), .appendToLog(offset: 0, length: nil)])])
        let h = try PipelineHarness(p, logs: logs)
        let value = String(repeating: "v", count: 100)
        h.run((0..<5).map { _ in udpFrame(value) })
        let out = h.drain(0)
        h.release(out.filter { $0.kind == .logRecord })
        #expect(out.map(\.kind) == [.logRecord, .logRecord, .segmentFull, .logRecord, .logRecord, .segmentFull])
        #expect(out[2].packet.flow == 0 && out[2].packet.length == 2 * 104)
        #expect(out[5].packet.flow == 1)
        // The fifth record found segment 0 still held by the core: slow path, not lost.
        let slow = h.drain(1)
        #expect(slow.count == 1 && slow[0].detail == SlowPathReason.logUnavailable.rawValue && slow[0].packet.owner != nil)
        var seen = 0
        logs[0].forEachRecord(inSegment: 0, used: Int(out[2].packet.length)) { r in
            #expect(r.count == 100)
            seen += 1
        }
        #expect(seen == 2)
        h.release(slow)
        // The core keeps segment 0's records and registers other memory in its place.
        let fresh = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 64)
        defer { fresh.deallocate() }
        logs[0].recycle(0, replacingWith: fresh)
        h.run((0..<2).map { _ in udpFrame(value) })
        let again = h.drain(0)
        h.release(again)
        #expect(again.map(\.kind) == [.logRecord, .logRecord])
        #expect(again.compactMap { $0.record.flatMap { logs[0].locate($0)?.offset } } == [4, 108])
        #expect(again[0].record == fresh + 4)
        #expect(h.counters.segmentsFilled == 2)
        #expect(h.port.pool.available == h.port.pool.bufferCount)
    }
}

@Suite struct ProgramFileTests {
    static var configs: String {
        // Tests run from the package root (swift test) or from .build; find Configs/.
        var dir = URLPath.currentDirectory
        for _ in 0..<4 where !URLPath.exists(dir + "/Configs/steering") { dir = URLPath.parent(dir) }
        return dir + "/Configs/steering"
    }

    @Test(arguments: ["kvs-udp-key", "tcp-flow", "ids-symmetric", "reflect"])
    func shippedProgramsLoad(name: String) throws {
        let p = try ProgramFile.load(path: "\(Self.configs)/\(name).toml")
        #expect(p.name == name)
        _ = try SteeringPipeline(program: p)
    }

    @Test func fileEqualsTheProgramBuiltInSwift() throws {
        let p = try ProgramFile.load(path: "\(Self.configs)/kvs-udp-key.toml")
        let expected = SteeringProgram(name: "kvs-udp-key", queues: 2, stages: [
            .init("udp-memcached", fields: [FieldMatch(.destinationPort, .exact(11211)), FieldMatch(.ipProtocol, .exact(17))],
                  actions: [.strip(.l4)]),
            .init("get-key", payload: [PayloadMatch(offset: 8, text: "get ")],
                  actions: [.hash(.payloadToken(offset: 12, maxLength: 250)), .writeHash]),
            .init("steer", fields: [FieldMatch(.destinationPort, .exact(11211))], actions: [.redirect]),
        ])
        #expect(p == expected)
    }

    @Test func patternsParse() throws {
        let p = try ProgramFile.parse("""
            queues = 2
            [[stage]]
            match = { src_ip = "10.0.0.0/8", dst_port = "1000-2000", tcp_flags = "0x02/0x12", vlan = "*", "payload[2:2]" = "0xBEEF" }
            payload = [ { offset = 4, hex = "0a0B", mask = "ff0f" } ]
            actions = ["reply swap-eth set dst_port 9 truncate 4"]
            """)
        let f = p.stages[0].fields
        #expect(f.contains(FieldMatch(.sourceAddress, .prefix(0x0A00_0000, bits: 8))))
        #expect(f.contains(FieldMatch(.destinationPort, .range(1000, 2000))))
        #expect(f.contains(FieldMatch(.tcpFlags, .masked(2, mask: 0x12))))
        #expect(f.contains(FieldMatch(.vlanID, .any)))
        #expect(f.contains(FieldMatch(.payloadWord(offset: 2, width: 2), .exact(0xBEEF))))
        #expect(p.stages[0].payload == [PayloadMatch(offset: 4, bytes: [0x0A, 0x0B], mask: [0xFF, 0x0F])])
        #expect(p.stages[0].actions == [.reply([.swapEthernet, .set(.destinationPort, 9), .truncatePayload(4)])])
    }

    /// What `write` writes, `parse` reads back to the same program (matches in key
    /// order), for every kind of match, value and action.
    @Test func programsRoundTrip() throws {
        var patterns = SteeringProgram(name: "patterns", queues: 3, stages: [
            .init("all", fields: [FieldMatch(.sourceAddress, .prefix(0x0A00_0000, bits: 8)), FieldMatch(.destinationPort, .range(1000, 2000)),
                                  FieldMatch(.tcpFlags, .masked(2, mask: 0x12)), FieldMatch(.vlanID, .any),
                                  FieldMatch(.payloadWord(offset: 2, width: 2), .exact(0xBEEF)), FieldMatch(.destinationAddress, .exact(0x0A00_0002), negated: true)],
                  payload: [PayloadMatch(offset: 4, bytes: [0x0A, 0x0B], mask: [0xFF, 0x0F]), PayloadMatch(offset: 0, text: "say \"hi\"")],
                  actions: [.hash(.payloadField(offset: 1, lengthAt: 2, skipAt: 3)), .spread([0, 2]), .appendToLog(offset: 4, length: nil)]),
            .init("replies", actions: [.hash(.payload(offset: 0, length: 8)), .replyFromTable(keyOffset: 12, maxKeyLength: 250, keepPrefix: 8),
                                       .reply([.swapEthernet, .set(.destinationAddress, 0x0A00_0001), .truncatePayload(4), .dccpAck])]),
        ], defaultDisposition: .queue(2), redirectionEntries: 64, verifyL4Checksums: true, toeplitzKey: Array(repeating: 0x6D, count: 40))
        patterns.stages[0].name = "all \"fields\""
        let acks = AckBoard(basePort: 7101, count: 4)
        for p in [patterns, .thesisKeySteering(), .reflector, .receiveSideScaling(),
                  DCCPReceiver.program(port: 7100, udpEncapsulated: false, acks: acks, connections: 64, targetOffset: 2),
                  StatefulElementTests.inOrder()] {
            let text = try ProgramFile.write(p)
            #expect(try ProgramFile.parse(text) == ProgramFile.canonical(p), "\(p.name):\n\(text)")
        }
        let twice = SteeringProgram(name: "twice", queues: 1, stages: [
            .init("s", fields: [FieldMatch(.destinationPort, .range(1, 9)), FieldMatch(.destinationPort, .exact(5), negated: true)], actions: [.drop]),
        ])
        #expect(throws: ProgramError.self) { try ProgramFile.write(twice) }
    }

    /// Every file in Configs/steering/ is a program the code builds (`flexbench programs`
    /// writes them); the ones FlexNIC builds are checked here, the servers' in their suites.
    @Test func shippedFilesAreWhatTheCodeBuilds() throws {
        let names = Set(try FileManager.default.contentsOfDirectory(atPath: Self.configs).filter { $0.hasSuffix(".toml") })
        #expect(names == ["kvs-udp-key.toml", "flexkvs-udp-key.toml", "tcp-flow.toml", "reflect.toml", "ids-symmetric.toml",
                          "storm-dccp-receive.toml"])
        let built: [(String, SteeringProgram)] = [
            ("kvs-udp-key", .thesisKeySteering()), ("tcp-flow", .receiveSideScaling()), ("reflect", .reflector),
            ("storm-dccp-receive", DCCPReceiver.program(port: 7100, udpEncapsulated: true, acks: AckBoard(basePort: 7101, count: 4),
                                                        connections: 256, targetOffset: 0)),
        ]
        for (name, program) in built {
            #expect(try ProgramFile.load(path: "\(Self.configs)/\(name).toml") == ProgramFile.canonical(program), "\(name)")
        }
    }

    @Test(arguments: [
        ("queues = 1\n[[stage]\n", "line 2"),                                   // TOML syntax
        ("queues = 1\nbogus = 3\n", "unknown key"),                             // typo
        ("name = \"x\"\n", "bad.toml: missing `queues`"),
        ("queues = \"one\"\n", "bad.toml: line 1: `queues` has a value of the wrong type"),
        ("queues = 1\n[[stage]]\nname = 3\nactions = [\"drop\"]\n", "bad.toml: line 3: `stage[1].name` has a value of the wrong type"),
        ("queues = 1\n[[stage]]\nactions = [\"drop\"]\ncolour = 3\n", "bad.toml: line 4: unknown key(s) stage[1].colour"),
        ("queues = 1\n[[stage]]\nname = \"s\"\nactions = [\"teleport\"]\n", "stage 1 (s): cannot read action \"teleport\""),
        ("queues = 1\n[[stage]]\nmatch = { colour = 3 }\nactions = [\"drop\"]\n", "unknown match field \"colour\""),
        ("queues = 1\n[[stage]]\nmatch = { dst_port = 70000 }\nactions = [\"drop\"]\n", "does not fit 16 bits"),
        ("queues = 1\n[[stage]]\nactions = [\"queue 3\"]\n", "queue 3 out of range"),
        ("queues = 1\ndefault = \"maybe\"\n", "default must be"),
        ("queues = 1\nflow_registers = { capacity = 4, initial = [0] }\n[[stage]]\nactions = [\"lookup-flow\", \"set-register 0 dccp_seq -1\"]\n",
         "cannot read action"),
        ("queues = 1\nflow_registers = { capacity = 4, initial = [-1] }\n", "must not be negative"),
    ])
    func brokenFilesExplainThemselves(text: String, message: String) {
        do {
            _ = try ProgramFile.parse(text, source: "bad.toml")
            Issue.record("accepted a broken program")
        } catch {
            #expect("\(error)".contains("bad.toml"), "\(error)")
            #expect("\(error)".contains(message), "\(error)")
        }
    }
}

/// Tiny path helpers (no Foundation URL juggling in the tests above).
enum URLPath {
    static var currentDirectory: String { String(cString: getcwd(nil, 0)) }
    static func exists(_ p: String) -> Bool { access(p, F_OK) == 0 }
    static func parent(_ p: String) -> String { p.split(separator: "/").dropLast().reduce("") { $0 + "/" + $1 } }
}

#if canImport(Glibc)
import Glibc
#endif
