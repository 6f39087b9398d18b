import FlexConfig
import FlexIDS
import FlexIO
import FlexKVS
import FlexNIC
import FlexStorm
import FlexWire
import Foundation

/// One parser under fuzzing: it is fed the same bytes a server would read from a
/// stranger, through the entry point the server uses, and checks what must hold
/// beyond "no crash" (a failed check is a finding, as a crash is).
enum FuzzTarget: String, CaseIterable {
    /// Ethernet/VLAN/IPv4 (options)/UDP/TCP/DCCP/ARP parsing: offsets inside the frame.
    case frame
    /// Every program in Configs/steering run over the frame: every buffer comes back.
    case pipeline
    /// FlexStorm's DCCP receive program over the frame: every buffer comes back.
    case dccp
    /// A memcached session (text, meta or binary) fed the bytes in chunks: it replies,
    /// errs or waits for more, never consumes more than it got.
    case memcached
    /// One memcached UDP datagram through the frame header and the request handler.
    case udp
    /// Snort rules: parsed, compiled into port groups, run over fixed packets.
    case rules
    /// A packet through flexids' inspection with rules that use every option kind
    /// (tunnels, fragments, HTTP and URI normalization, byte options, flowbits).
    case ids
    /// A capture file through flexids' loader (every link type).
    case pcap
    /// A steering program's TOML: parsed, written back, parsed again to the same program.
    case program
    /// A FlexStorm cluster config.
    case stormConfig = "storm-config"

    nonisolated(unsafe) static var current: FuzzTarget?

    func prepare() {
        switch self {
        case .pipeline: _ = Fixtures.pipelines
        case .dccp: _ = Fixtures.dccp
        case .memcached, .udp: _ = Fixtures.kvs
        case .ids: _ = Fixtures.inspector
        default: break
        }
    }

    func run(_ bytes: UnsafeRawBufferPointer) {
        switch self {
        case .frame: Self.frame(bytes)
        case .pipeline: for p in Fixtures.pipelines { Self.steer(bytes, through: p) }
        case .dccp: Self.dccp(bytes)
        case .memcached: Self.memcached(bytes)
        case .udp: Self.udp(bytes)
        case .rules: Self.rules(bytes)
        case .ids: Self.ids(bytes)
        case .pcap: Self.pcap(bytes)
        case .program: Self.program(bytes)
        case .stormConfig: _ = try? StormConfig.parse(String(decoding: bytes, as: UTF8.self))
        }
    }

    static func frame(_ bytes: UnsafeRawBufferPointer) {
        var copy = Array(bytes)
        copy.withUnsafeMutableBytes { frame in
            guard let f = try? ParsedFrame(parsing: frame) else { return }
            precondition(f.l3Offset <= f.l4Offset && f.l4Offset <= f.payloadOffset, "offsets out of order")
            precondition(Int(f.payloadOffset) + Int(f.payloadLength) <= frame.count, "payload past the frame")
            precondition(Int(f.frameLength) <= frame.count, "frame length past the frame")
        }
    }

    /// Injects the frame, steers it, drains every ring and the replies, and checks that
    /// the port got every buffer back.
    static func steer(_ bytes: UnsafeRawBufferPointer, through p: SteeringPipeline) {
        let port = Fixtures.port
        let full = port.pool.available
        guard bytes.count <= 2048, port.inject(bytes) else { return }
        let batch = PacketBatch(capacity: 4), replies = PacketBatch(capacity: 4)
        _ = port.receive(queue: 0, into: batch)
        p.process(batch, port: port, replies: replies)
        let inbox = UnsafeMutablePointer<Descriptor>.allocate(capacity: 64)
        defer { inbox.deallocate() }
        for ring in p.rings {
            let n = ring.dequeue(into: inbox, maximum: 64)
            for i in 0..<n where inbox[i].kind != .segmentFull { port.release(inbox[i].packet) }
        }
        if !replies.isEmpty { port.release(replies) }
        precondition(port.pool.available == full, "\(p.program.name) kept \(full - port.pool.available) buffer(s)")
    }

    static func dccp(_ bytes: UnsafeRawBufferPointer) {
        let (receiver, port, queues) = Fixtures.dccp
        let full = port.pool.available
        guard bytes.count <= 2048, port.inject(bytes) else { return }
        let batch = PacketBatch(capacity: 4), replies = PacketBatch(capacity: 4), release = PacketBatch(capacity: 4)
        _ = port.receive(queue: 0, into: batch)
        receiver.process(batch, port: port, replies: replies, release: release)
        if !replies.isEmpty { port.release(replies) }
        if !release.isEmpty { port.release(release) }
        for q in queues { while q.dequeue() != nil {} }
        precondition(port.pool.available == full, "the DCCP receive path kept \(full - port.pool.available) buffer(s)")
    }

    static func memcached(_ bytes: UnsafeRawBufferPointer) {
        guard let first = bytes.first else { return }
        // What a TCP worker prefetches from waiting requests, in either dialect.
        let hints = KeyHints()
        for binary in [false, true] {
            let found = RequestKeyScanner.scan(bytes, binary: binary, into: hints)
            precondition((0...KeyHints.capacity).contains(found), "\(found) keys from a scan of at most \(KeyHints.capacity)")
        }
        let s = Session()
        // The first byte sets the chunk size the stream arrives in.
        let chunk = 1 + Int(first)
        var offset = 1
        while offset < bytes.count && !s.closing {
            let n = min(chunk, bytes.count - offset)
            s.receive(UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)]))
            offset += n
            ProtocolHandler.run(s, Fixtures.kvs)
            precondition(s.output.count < 64 << 20, "output without bound")
            s.output.removeAll()
        }
    }

    static func udp(_ bytes: UnsafeRawBufferPointer) {
        guard let frame = MemcachedUDPFrame(bytes), frame.isWhole else { return }
        let s = Session()
        s.receive(frame.request)
        ProtocolHandler.run(s, Fixtures.kvs)
        let datagrams = MemcachedUDPFrame.datagrams(forReply: s.output.count)
        precondition(datagrams >= 0, "negative datagram count")
    }

    static func rules(_ bytes: UnsafeRawBufferPointer) {
        var set = RuleSet()
        set.add(String(decoding: bytes, as: UTF8.self), file: "fuzz.rules", variables: RuleVariables())
        guard !set.rules.isEmpty else { return }
        let inspector = Inspector(engine: DetectionEngine(rules: set.rules))
        for (i, frame) in Fixtures.frames.enumerated() {
            var copy = frame
            copy.withUnsafeMutableBytes { _ = inspector.inspect($0, number: i + 1, timestampNanoseconds: UInt64(i)) }
        }
        inspector.finish()
    }

    static func ids(_ bytes: UnsafeRawBufferPointer) {
        var copy = Array(bytes)
        let inspector = Fixtures.inspector
        copy.withUnsafeMutableBytes { _ = inspector.inspect($0, number: 1, timestampNanoseconds: 0) }
        for a in inspector.takeAlerts() { precondition(Int(a.rule) < inspector.engine.rules.count, "alert for no rule") }
    }

    static func pcap(_ bytes: UnsafeRawBufferPointer) {
        let path = Fixtures.scratchFile
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)), let trace = try? Trace(path: path) else { return }
        for i in trace.records.indices { precondition(trace.frame(i).count == trace.records[i].length, "record length") }
    }

    static func program(_ bytes: UnsafeRawBufferPointer) {
        guard let p = try? ProgramFile.parse(String(decoding: bytes, as: UTF8.self)) else { return }
        guard let text = try? ProgramFile.write(p) else { return }
        let again: SteeringProgram
        do { again = try ProgramFile.parse(text) } catch { preconditionFailure("a written program does not parse (\(error)):\n\(text)") }
        precondition(ProgramFile.canonical(again) == ProgramFile.canonical(p), "a program does not survive writing and reading")
    }
}

/// What the targets share, built once per process.
enum Fixtures {
    static let port = MemoryPort(name: "fuzz", bufferCount: 64)

    /// Every program in Configs/steering that runs without application parts, and the
    /// KVS programs with a reply table.
    static let pipelines: [SteeringPipeline] = {
        var out: [SteeringPipeline] = []
        let dir = "Configs/steering"
        for name in ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() where name.hasSuffix(".toml") {
            guard let program = try? ProgramFile.load(path: "\(dir)/\(name)") else { continue }
            if let p = try? SteeringPipeline(program: program, ringCapacity: 64, replyTable: ReplyTable(slots: 64)) { out.append(p) }
        }
        precondition(!out.isEmpty, "run from the package root: no programs in \(dir)")
        return out
    }()

    static let dccp: (DCCPReceiver, MemoryPort, [SPSCRing<Tuple>]) = {
        let queues = (0..<4).map { _ in SPSCRing<Tuple>(capacity: 256) }
        let receiver = DCCPReceiver(port: 7100, udpEncapsulated: true, queues: queues, targets: [0, 1, 2, 3],
                                    acks: AckBoard(basePort: 7101, count: 4), clock: { 0 })
        return (receiver, MemoryPort(name: "fuzz-dccp", bufferCount: 64), queues)
    }()

    static let kvs: KVSContext = {
        var c = KVStore.Configuration()
        c.memoryLimit = 8 << 20
        c.segmentSize = 64 << 10
        c.maxItemSize = 16 << 10
        return KVSContext(store: KVStore(c), threads: 1)
    }()

    /// Rules with every kind of option flexids reads.
    static let idsRules = """
        alert tcp any any -> any 80 (msg:"uri"; content:"/etc/passwd"; http_uri; urilen:>5,norm; sid:1;)
        alert tcp any any -> any any (msg:"bytes"; content:"|00|"; byte_extract:1,0,n,relative; byte_test:1,>,n,0,relative; byte_jump:1,0,relative,align,post_offset -1; isdataat:2,relative; sid:2;)
        alert udp any any -> any any (msg:"flowbits"; content:"A"; flowbits:set,a; flowbits:noalert; sid:3;)
        alert udp any any -> any any (msg:"isset"; flowbits:isset,a; byte_test:2,!&,0x8000,0,string,hex; sid:4;)
        alert ip any any -> any any (msg:"frag"; fragbits:M+; ttl:<200; sid:5;)
        alert icmp any any -> any any (msg:"icmp"; itype:8; icmp_id:1; sid:6;)
        alert tcp any any -> any any (msg:"pcre"; pcre:"/a.{2,}b/Rsi"; file_data; content:"x"; distance:0; sid:7;)
        pass tcp any any -> any 22 (msg:"pass"; sid:8;)
        alert tcp any any -> any any (msg:"flags"; flags:S+; detection_filter:track by_src, count 2, seconds 1; sid:9;)
        alert tcp any any -> any any (msg:"base64"; content:"Authorization:"; base64_decode:bytes 64, offset 1, relative; base64_data; content:"NTLMSSP"; within:8; sid:10;)
        alert udp any any -> any any (msg:"base64 all"; base64_decode; base64_data; byte_test:1,>,0x30,0,relative; pcre:"/a/R"; sid:11;)
        alert udp any any -> any any (msg:"asn1"; asn1:bitstring_overflow, double_overflow, oversize_length 100, absolute_offset 0; sid:12;)
        alert tcp any any -> any any (msg:"asn1 relative"; content:"|30|"; asn1:oversize_length 0, relative_offset -1; sid:13;)
        alert tcp any any -> any 21 (msg:"bounce"; content:"PORT"; nocase; ftpbounce; sid:14;)
        alert tcp any any -> any any (msg:"math"; content:"|00|"; byte_math:bytes 2, offset 0, oper <<, rvalue 3, result m, relative; byte_test:2,>,m,0,relative; stream_size:either,>,4; sid:15;)
        alert ip any any -> any any (msg:"ipopts"; ipopts:lsrr; sid:16;)
        """

    nonisolated(unsafe) static let inspector: Inspector = {
        var set = RuleSet()
        set.add(idsRules, file: "fuzz.rules", variables: RuleVariables())
        precondition(set.skipped.isEmpty, "\(set.skipped)")
        return Inspector(engine: DetectionEngine(rules: set.rules), flowCapacity: 1024)
    }()

    /// A few packets for rules to meet (a TCP request, a UDP datagram, an ICMP echo).
    static let frames: [[UInt8]] = {
        let e = FrameBuilder.Endpoints(source: IPv4Address(10, 0, 0, 1), destination: IPv4Address(10, 0, 0, 2),
                                       sourcePort: 40000, destinationPort: 80)
        func build(_ body: (UnsafeMutableRawBufferPointer) throws -> Int) -> [UInt8] {
            var b = [UInt8](repeating: 0, count: 1514)
            let n = (try? b.withUnsafeMutableBytes(body)) ?? 0
            return Array(b[..<n])
        }
        return [
            build { try FrameBuilder.tcp(into: $0, endpoints: e, payload: Array("GET /a%2fb HTTP/1.1\r\nHost: x\r\n\r\n".utf8), flags: [.ack, .psh]) },
            build { try FrameBuilder.udp(into: $0, endpoints: e, payload: Array("\u{0}\u{1}query".utf8)) },
        ]
    }()

    static let scratchFile = "/tmp/flexfuzz-\(getpid()).pcap"
}
