@testable import FlexIDS
import FlexTestSupport
import FlexWire
import Foundation
import Testing

/// Helpers: frames from given endpoints, rules from text.
enum Make {
    static let client = FrameBuilder.Endpoints(source: IPv4Address(10, 0, 0, 1), destination: IPv4Address(93, 184, 216, 34),
                                               sourcePort: 40000, destinationPort: 80)

    static func tcp(_ payload: String, _ e: FrameBuilder.Endpoints = client, flags: TCPHeader.Flags = [.ack, .psh]) -> [UInt8] {
        try! Frames.build { try FrameBuilder.tcp(into: $0, endpoints: e, payload: Array(payload.utf8), flags: flags) }
    }

    static func udp(_ payload: [UInt8], _ e: FrameBuilder.Endpoints) -> [UInt8] {
        try! Frames.build { try FrameBuilder.udp(into: $0, endpoints: e, payload: payload) }
    }

    static func engine(_ rules: String, matcher: MatcherChoice = .auto) throws -> DetectionEngine {
        var v = RuleVariables()
        v.define("HOME_NET", "10.0.0.0/8")
        v.define("EXTERNAL_NET", "!$HOME_NET")
        v.define("HTTP_PORTS", "[80,8080]")
        var set = RuleSet()
        set.add(rules, file: "test.rules", variables: v)
        guard set.skipped.isEmpty else { throw TestSetupError("skipped: \(set.skipped)") }
        return DetectionEngine(rules: set.rules, matcher: matcher)
    }

    /// The sids that fire on `frames`, in order, inspected by one instance.
    static func sids(_ engine: DetectionEngine, _ frames: [[UInt8]]) -> [UInt32] {
        let inspector = Inspector(engine: engine)
        for (i, var f) in frames.enumerated() {
            f.withUnsafeMutableBytes { _ = inspector.inspect($0, number: i + 1, timestampNanoseconds: UInt64(i)) }
        }
        inspector.finish()
        return inspector.alerts.sorted().map { engine.rules[Int($0.rule)].sid }
    }
}

@Suite struct MultiPatternMatcherTests {
    /// What a naive case-insensitive search finds: the ids of the patterns in `text`.
    static func naive(_ patterns: [[UInt8]], _ text: [UInt8]) -> Set<Int32> {
        let fold = MultiPatternMatcher.fold
        var expected = Set<Int32>()
        for (id, p) in patterns.enumerated() where p.count <= text.count {
            for i in 0...(text.count - p.count) where (0..<p.count).allSatisfy({ fold[Int(text[i + $0])] == fold[Int(p[$0])] }) {
                expected.insert(Int32(id))
            }
        }
        return expected
    }

    /// Random patterns over a small alphabet (so they overlap and nest) and texts.
    static func randomCase(_ rng: inout SplitMix64) -> (patterns: [[UInt8]], texts: [[UInt8]]) {
        let alphabet = Array("abcAB\r\n \0\u{ff}".utf8)
        let patterns: [[UInt8]] = (0..<60).map { _ in (0..<(1 + rng.next(below: 5))).map { _ in alphabet[rng.next(below: alphabet.count)] } }
        let texts = (0..<40).map { _ in (0..<(1 + rng.next(below: 300))).map { _ in alphabet[rng.next(below: alphabet.count)] } }
        return (patterns, texts)
    }

    /// The automaton finds exactly what a naive case-insensitive search finds.
    @Test func agreesWithNaiveSearchOnRandomInput() {
        var rng = SplitMix64(seed: 42)
        for _ in 0..<5 {
            let (patterns, texts) = Self.randomCase(&rng)
            let matcher = MultiPatternMatcher(patterns: patterns)
            for text in texts {
                var got = Set<Int32>()
                text.withUnsafeBytes { matcher.scan($0) { got.insert($0) } }
                #expect(got == Self.naive(patterns, text))
            }
        }
    }

    /// CI installs Hyperscan, so the engine's default matcher is tested, not the fallback.
    @Test func hyperscanIsAvailable() {
        #expect(HyperscanDatabase.isAvailable, "\(HyperscanDatabase.unavailableReason)")
    }

    /// A database read back from the cache finds what the compiled one finds; a cache
    /// file that is not a database is compiled over.
    @Test(.enabled(if: HyperscanDatabase.isAvailable)) func hyperscanCacheRoundTrips() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let cache = HyperscanCache(directory: directory)
        let patterns: [[UInt8]] = [Array("evil".utf8), Array("GET /".utf8), [0, 1, 2]]
        let text = Array("xx get /EVIL \u{0}\u{1}\u{2}".utf8)
        func found(_ db: HyperscanDatabase) -> Set<Int32> {
            let scratch = HyperscanScratch(for: [db])
            let n = text.withUnsafeBytes { db.scan($0, scratch) }
            return Set((0..<n).map { scratch.sink.pointee.ids[$0] })
        }
        let compiled = try #require(HyperscanDatabase(patterns: patterns, cache: cache))
        let files = try FileManager.default.contentsOfDirectory(atPath: directory)
        #expect(files.count == 1 && files[0].hasSuffix(".hsdb"))
        let loaded = try #require(HyperscanDatabase(patterns: patterns, cache: cache))
        #expect(found(compiled) == [0, 1, 2] && found(loaded) == [0, 1, 2])
        try Data("not a database".utf8).write(to: URL(fileURLWithPath: directory + "/" + files[0]))
        let recompiled = try #require(HyperscanDatabase(patterns: patterns, cache: cache))
        #expect(found(recompiled) == [0, 1, 2])
        #expect((try Data(contentsOf: URL(fileURLWithPath: directory + "/" + files[0]))).count > 100, "rewritten")
    }

    /// Hyperscan's database finds the same pattern ids, each once per scan.
    @Test(.enabled(if: HyperscanDatabase.isAvailable)) func hyperscanAgreesWithNaiveSearch() throws {
        var rng = SplitMix64(seed: 7)
        for _ in 0..<5 {
            let (patterns, texts) = Self.randomCase(&rng)
            let database = try #require(HyperscanDatabase(patterns: patterns))
            let scratch = HyperscanScratch(for: [database])
            for text in texts {
                let found = text.withUnsafeBytes { database.scan($0, scratch) }
                let ids = (0..<found).map { scratch.sink.pointee.ids[$0] }
                #expect(Set(ids).count == ids.count, "single-match: each id once")
                #expect(Set(ids) == Self.naive(patterns, text))
            }
        }
    }

    @Test func reportsEveryEndPosition() {
        let matcher = MultiPatternMatcher(patterns: [Array("he".utf8), Array("she".utf8), Array("hers".utf8), Array("E".utf8)])
        var hits: [Int32] = []
        Array("uSHErs".utf8).withUnsafeBytes { matcher.scan($0) { hits.append($0) } }
        #expect(hits.sorted() == [0, 1, 2, 3], "she, he, e at position 3; hers at 5")
        #expect(matcher.memoryFootprint >= matcher.stateCount * 1024)
    }
}

@Suite struct RuleConfirmationTests {
    @Test func contentPositionsNegationAndBacktracking() throws {
        let engine = try Make.engine("""
            alert tcp any any -> any 80 (msg:"depth"; content:"GET"; depth:3; sid:1;)
            alert tcp any any -> any 80 (msg:"offset too far"; content:"GET"; offset:1; sid:2;)
            alert tcp any any -> any 80 (msg:"distance within"; content:"a="; content:"b="; distance:0; within:6; sid:3;)
            alert tcp any any -> any 80 (msg:"backtrack"; content:"x"; content:"yz"; distance:0; within:2; sid:4;)
            alert tcp any any -> any 80 (msg:"negated"; content:"GET"; content:!"evil"; sid:5;)
            alert tcp any any -> any 80 (msg:"negated hit"; content:"GET"; content:!"b="; sid:6;)
            alert tcp any any -> any 80 (msg:"case"; content:"get"; sid:7;)
            alert tcp any any -> any 80 (msg:"nocase"; content:"get"; nocase; sid:8;)
            alert tcp any any -> any 80 (msg:"pcre relative"; content:"a="; pcre:"/\\G1/R"; sid:9;)
            alert tcp any any -> any 80 (msg:"isdataat"; content:"GET"; isdataat:5,relative; isdataat:!500,relative; sid:10;)
            alert tcp any any -> any 80 (msg:"dsize"; dsize:>10; content:"GET"; sid:11;)
            """)
        // "x" first occurs where "yz" does not follow within 2; the second "x" has it.
        #expect(Make.sids(engine, [Make.tcp("GET /?a=1&b=2 x..x yz xyz")]) == [1, 3, 4, 5, 8, 9, 10, 11])
    }

    @Test func pcreRelativeAnchorsAtTheCursorAndIsRetried() throws {
        let engine = try Make.engine("""
            alert tcp any any -> any 80 (msg:"anchored at cursor"; content:"id="; pcre:"/^[0-9]+&/R"; sid:1;)
            alert tcp any any -> any 80 (msg:"anchored, wrong"; content:"id="; pcre:"/^x/R"; sid:2;)
            alert tcp any any -> any 80 (msg:"retried"; pcre:"/k[0-9]/"; content:"!"; distance:0; within:1; sid:3;)
            alert tcp any any -> any 80 (msg:"negated"; content:"id="; pcre:!"/^[a-z]/R"; sid:4;)
            alert tcp any any -> any 80 (msg:"runaway"; pcre:"/(a+)+$/"; sid:5;)
            """)
        // "k1" is not followed by "!", "k2" is: the pcre must be searched again.
        #expect(Make.sids(engine, [Make.tcp("GET /?id=42&k1.k2! ")]) == [1, 3, 4])
        // Catastrophic backtracking hits the match limit: the rule fails, nothing hangs.
        #expect(Make.sids(engine, [Make.tcp(String(repeating: "a", count: 40) + "!")]).isEmpty)
    }

    @Test func httpBuffers() throws {
        let engine = try Make.engine("""
            alert tcp any any -> any $HTTP_PORTS (msg:"uri"; content:"/admin"; http_uri; sid:1;)
            alert tcp any any -> any $HTTP_PORTS (msg:"uri not header"; content:"Host"; http_uri; sid:2;)
            alert tcp any any -> any $HTTP_PORTS (msg:"method"; content:"POST"; http_method; sid:3;)
            alert tcp any any -> any $HTTP_PORTS (msg:"cookie"; content:"id=7"; http_cookie; sid:4;)
            alert tcp any any -> any $HTTP_PORTS (msg:"body"; content:"q=1"; http_client_body; sid:5;)
            alert tcp any any -> any $HTTP_PORTS (msg:"header"; content:"Host|3a| x"; http_header; sid:6;)
            alert tcp any any -> any $HTTP_PORTS (msg:"urilen"; urilen:6; sid:7;)
            alert tcp any $HTTP_PORTS -> any any (msg:"status"; content:"404"; http_stat_code; sid:8;)
            alert tcp any $HTTP_PORTS -> any any (msg:"file_data"; file_data; content:"<b>"; sid:9;)
            alert tcp any $HTTP_PORTS -> any any (msg:"pcre Y"; pcre:"/not found/Yi"; sid:10;)
            """)
        let request = Make.tcp("POST /admin HTTP/1.1\r\nHost: x\r\nCookie: id=7\r\n\r\nq=1")
        let response = Make.tcp("HTTP/1.1 404 Not Found\r\nServer: y\r\n\r\n<b>gone</b>", Make.client.reversed)
        #expect(Make.sids(engine, [request]) == [1, 3, 4, 5, 6, 7])
        #expect(Make.sids(engine, [response]) == [8, 9, 10])
        #expect(Make.sids(engine, [Make.tcp("not http at all /admin POST")]).isEmpty)
    }

    @Test func headerFlowAndFlags() throws {
        let engine = try Make.engine("""
            alert tcp $HOME_NET any -> $EXTERNAL_NET 80 (msg:"to server est"; flow:to_server,established; content:"hi"; sid:1;)
            alert tcp any 80 -> any any (msg:"to client"; flow:to_client; content:"hi"; sid:2;)
            alert tcp $EXTERNAL_NET any -> any any (msg:"wrong direction"; content:"hi"; sid:3;)
            alert tcp any any -> any 80 (msg:"syn"; flags:S; sid:4;)
            alert tcp any any <> any 80 (msg:"bidirectional"; content:"hi"; sid:5;)
            alert tcp any any -> any 80 (msg:"not established"; flow:not_established; content:"hi"; sid:6;)
            """)
        let server = Make.client.reversed
        // Handshake: data before the third ACK is not established.
        let frames = [Make.tcp("", flags: [.syn]), Make.tcp("hi", flags: [.ack]), Make.tcp("", server, flags: [.syn, .ack]),
                      Make.tcp("", flags: [.ack]), Make.tcp("hi"), Make.tcp("hi", server)]
        let inspector = Inspector(engine: engine)
        var bySid: [UInt32: [Int]] = [:]
        for (i, var f) in frames.enumerated() { f.withUnsafeMutableBytes { _ = inspector.inspect($0, number: i + 1, timestampNanoseconds: 0) } }
        for a in inspector.alerts { bySid[engine.rules[Int(a.rule)].sid, default: []].append(a.packet) }
        #expect(bySid[4] == [1])
        #expect(bySid[6] == [2])
        #expect(bySid[1] == [5])
        #expect(bySid[2] == [6])
        #expect(bySid[5] == [2, 5, 6])
        #expect(bySid[3] == [6])
        // A RST ends the session; a new SYN on the 5-tuple starts a new one.
        let after = [Make.tcp("", flags: [.rst, .ack]), Make.tcp("hi"), Make.tcp("", flags: [.syn]), Make.tcp("hi")]
        for (i, var f) in after.enumerated() { f.withUnsafeMutableBytes { _ = inspector.inspect($0, number: 7 + i, timestampNanoseconds: 0) } }
        let late = inspector.alerts.filter { $0.packet >= 7 }.map { "\(engine.rules[Int($0.rule)].sid)@\($0.packet)" }
        #expect(Set(late) == ["6@8", "5@8", "4@9", "6@10", "5@10"], "\(late)")
        // Mid-stream pickup: established at once, the client guessed from the ports.
        #expect(Make.sids(engine, [Make.tcp("hi", server)]) == [2, 3, 5])
        #expect(Make.sids(engine, [Make.tcp("hi")]) == [1, 5])
    }

    /// Content-less rules that name addresses (reputation lists) are candidates only
    /// for packets from (to) those addresses, and still fire on them.
    @Test func addressListedRulesWithoutContent() throws {
        let engine = try Make.engine("""
            alert tcp [10.0.0.1,192.0.2.0/24] any -> any any (msg:"bad source"; sid:1;)
            alert tcp any any -> [93.184.216.34,198.51.100.7] any (msg:"bad destination"; sid:2;)
            alert tcp any any -> any any (msg:"everything"; flags:A+; sid:3;)
            """)
        let group = engine.groups.first { $0.name == "tcp any" }!
        #expect(!group.sourceListed.isEmpty && !group.destinationListed.isEmpty && group.alwaysRules.count == 1)
        #expect(Make.sids(engine, [Make.tcp("x")]) == [1, 2, 3])
        let other = FrameBuilder.Endpoints(source: IPv4Address(10, 0, 0, 2), destination: IPv4Address(93, 184, 216, 35), sourcePort: 1, destinationPort: 2)
        #expect(Make.sids(engine, [Make.tcp("x", other)]) == [3])
        let inspector = Inspector(engine: engine)
        var frame = Make.tcp("x", other)
        frame.withUnsafeMutableBytes { _ = inspector.inspect($0, number: 1, timestampNanoseconds: 0) }
        #expect(inspector.counters.candidates == 1, "only the rule without addresses is a candidate")
    }

    /// Of many reputation rules, a packet makes candidates of exactly those whose lists
    /// include its address, overlapping lists and list ends included.
    @Test func addressIndexFindsExactlyTheListingRules() {
        var rng = SplitMix64(seed: 3)
        let variables = RuleVariables()
        let sets = (0..<40).map { _ -> AddressSet in
            let blocks = (0..<(1 + rng.next(below: 6))).map { _ in "10.0.\(rng.next(below: 4)).\(rng.next(below: 256))/\(24 + rng.next(below: 9))" }
            return try! AddressSet(parsing: Substring("[\(blocks.joined(separator: ","))]"), variables: variables)
        }
        let index = AddressIndex((0..<40).map(Int32.init), sets)
        for v4 in UInt32(0x0A00_0000 - 2)...UInt32(0x0A00_0400 + 2) {
            let a = IPAddressing.mapped(v4)
            var got: [Int32] = []
            index.forEachRule(containing: a) { got.append($0) }
            let expected = sets.indices.filter { sets[$0].contains(a) }.map(Int32.init)
            #expect(got == expected, "\(a)")
        }
        var edge: [Int32] = []
        AddressIndex([0], [try! AddressSet(parsing: "[ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120]", variables: variables)]).forEachRule(containing: .max) { edge.append($0) }
        #expect(edge == [0], "a range that ends at the top of the address space")
    }

    @Test func thresholdsFilterInPacketOrder() throws {
        let engine = try Make.engine("""
            alert tcp any any -> any 80 (msg:"limit"; content:"x"; threshold:type limit, track by_src, count 2, seconds 10; sid:1;)
            alert tcp any any -> any 80 (msg:"every 3rd"; content:"x"; threshold:type threshold, track by_src, count 3, seconds 10; sid:2;)
            alert tcp any any -> any 80 (msg:"once after 2"; content:"x"; threshold:type both, track by_dst, count 2, seconds 10; sid:3;)
            """)
        func alert(_ packet: Int, rule: Int32, seconds: UInt64) -> Alert {
            Alert(packet: packet, timestampNanoseconds: seconds * 1_000_000_000, rule: rule, proto: 6, source: 1, destination: 2, sourcePort: 1, destinationPort: 80)
        }
        var alerts: [Alert] = []
        for (i, t) in [0, 1, 2, 3, 4, 5, 12].enumerated() { for r in 0..<3 { alerts.append(alert(i + 1, rule: Int32(r), seconds: UInt64(t))) } }
        let kept = ThresholdFilter.apply(alerts.shuffled(), rules: engine.rules)
        #expect(kept.filter { $0.rule == 0 }.map(\.packet) == [1, 2, 7])
        #expect(kept.filter { $0.rule == 1 }.map(\.packet) == [3, 6])
        #expect(kept.filter { $0.rule == 2 }.map(\.packet) == [2])
    }
}

@Suite struct PortGroupTests {
    @Test func rulesLandInSnortsGroupsAndSharedListsAreShared() throws {
        let engine = try Make.engine("""
            alert tcp any any -> any $HTTP_PORTS (content:"a"; sid:1;)
            alert tcp any any -> any 80 (content:"b"; sid:2;)
            alert tcp any 22 -> any any (content:"c"; sid:3;)
            alert tcp any any -> any any (content:"d"; sid:4;)
            alert tcp any any -> any 1024: (content:"e"; sid:5;)
            alert udp any any <> any 53 (content:"f"; sid:6;)
            alert ip any any -> any any (content:"g"; sid:7;)
            alert tcp any any -> any [1,2,3,4,5,6,7,8,9,10,80] (content:"h"; sid:8;)
            """)
        let names = Set(engine.groups.map(\.name))
        #expect(names.contains("tcp dst $HTTP_PORTS (2 ports)") == false, "two ports is a short list: merged per port")
        #expect(names.contains("tcp dst 80") && names.contains("tcp dst 8080"))
        #expect(names.contains("tcp src 22") && names.contains("tcp any") && names.contains("ip any"))
        #expect(names.contains("udp dst 53") && names.contains("udp src 53"))
        #expect(names.contains("tcp dst [1,2,3,4,5,6,7,8,9,10,80] (11 ports)"))
        let any = engine.groups.first { $0.name == "tcp any" }!
        #expect(any.rules.map { engine.rules[Int($0)].sid } == [4, 5], "a broad range goes to any-any")
        // Both directions of a flow have one flow group, which names every group it checks.
        let forward = try Frames.parse(Make.tcp("x")), backward = try Frames.parse(Make.tcp("x", Make.client.reversed))
        #expect(engine.flowGroup(of: forward) == engine.flowGroup(of: backward))
        #expect(engine.flowGroup(of: forward) == FlowGroup(proto: 6, low: 0, high: 80))
        #expect(engine.groupNames(of: FlowGroup(proto: 6, low: 0, high: 80)) == ["tcp dst [1,2,3,4,5,6,7,8,9,10,80] (11 ports)", "tcp dst 80", "tcp any", "ip any"])
        #expect(Make.sids(engine, [Make.tcp("abcdefgh")]) == [1, 2, 4, 7, 8])
    }
}

@Suite struct URINormalizerTests {
    func normalized(_ s: String) -> String {
        let out = UnsafeMutableRawBufferPointer.allocate(byteCount: max(s.utf8.count, 1), alignment: 1)
        defer { out.deallocate() }
        let n = Array(s.utf8).withUnsafeBytes { URINormalizer.normalize($0, into: out) }
        return String(decoding: out[0..<n], as: UTF8.self)
    }

    /// Decoding (once and again), backslashes, slashes and dot segments, the query
    /// left alone but decoded, and never above the root.
    @Test func normalizesAsHTTPInspectsProfileAll() {
        #expect(normalized("/a/b/../c") == "/a/c")
        #expect(normalized("/a/./b//c") == "/a/b/c")
        #expect(normalized("/../../etc/passwd") == "/etc/passwd")
        #expect(normalized("/a/%2e%2e/b") == "/b")
        #expect(normalized("/a/%252e%252e/b") == "/b")
        #expect(normalized("/a\\..\\b") == "/b")
        #expect(normalized("/%u0041%u0042") == "/AB")
        #expect(normalized("/x?y=/../%41") == "/x?y=/../A")
        #expect(normalized("/bad%zz%4") == "/bad%zz%4")
        #expect(normalized("/a/..") == "/")
        #expect(normalized("") == "")
    }
}

@Suite struct DefragmenterTests {
    /// A capture whose clock steps back (merged captures do) does not age datagrams out:
    /// only time that went forward counts toward the 60-second timeout.
    @Test func aClockSteppingBackDropsNothing() throws {
        let engine = try Make.engine(#"alert tcp any any -> any 80 (msg:"attack"; content:"attack"; sid:1;)"#)
        let trace = try Trace(path: "Tests/FlexIDSTests/Cases/fragmented-content-is-found-after-reassembly.pcap")
        let inspector = Inspector(engine: engine)
        for i in trace.records.indices {
            inspector.inspect(trace.frame(i), number: i + 1, timestampNanoseconds: UInt64(100 - i) * 1_000_000_000)
        }
        #expect(inspector.counters.fragmentDatagramsDropped == 0)
        #expect(inspector.alerts.map(\.packet) == [4, 8])
    }
}

@Suite struct HostileStreamTests {
    /// An IPv6 packet whose addresses are the IPv4-mapped forms of an IPv4 session's
    /// is another flow: its RST does not end the IPv4 session, and its bytes do not
    /// join the IPv4 stream.
    @Test func ipv4MappedIPv6IsNotTheIPv4Flow() throws {
        let engine = try Make.engine(#"alert tcp any any -> any 80 (msg:"split"; flow:established; content:"evil.php"; sid:1;)"#)
        let e = Make.client
        func segment(_ payload: String, flags: TCPHeader.Flags, sequence: UInt32, reversed: Bool = false) -> [UInt8] {
            try! Frames.build { try FrameBuilder.tcp(into: $0, endpoints: reversed ? e.reversed : e, payload: Array(payload.utf8), flags: flags,
                                                    sequence: sequence, acknowledgement: 1) }
        }
        var rst = segment("", flags: [.rst, .ack], sequence: 1008)
        let mappedRST = rst.withUnsafeMutableBytes { IPv6Frames.twin(of: $0, prefix: IPv6Frames.mappedPrefix)! }
        let frames = [segment("", flags: [.syn], sequence: 1000), segment("", flags: [.syn, .ack], sequence: 5000, reversed: true),
                      segment("", flags: [.ack], sequence: 1001), segment("GET /ev", flags: [.ack, .psh], sequence: 1001),
                      mappedRST, segment("il.php HTTP/1.1\r\n\r\n", flags: [.ack, .psh], sequence: 1008),
                      segment("HTTP/1.1 200 OK\r\n\r\n", flags: [.ack, .psh], sequence: 5001, reversed: true)]
        #expect(Make.sids(engine, frames) == [1])
    }

    /// A segment half the sequence space ahead (or anywhere past the window) is not
    /// held and cannot move the stream; nothing traps on the arithmetic.
    @Test func segmentsFarAheadAreNotHeld() throws {
        let engine = try Make.engine(#"alert tcp any any -> any 80 (msg:"split"; content:"evil.php"; sid:1;)"#)
        let inspector = Inspector(engine: engine)
        func segment(_ payload: String, _ sequence: UInt32) -> [UInt8] {
            try! Frames.build { try FrameBuilder.tcp(into: $0, endpoints: Make.client, payload: Array(payload.utf8), flags: [.ack, .psh],
                                                    sequence: sequence, acknowledgement: 1) }
        }
        var frames = [segment("GET /ev", 1000)]
        // Half the sequence space away (old data, as TCP compares), and far ahead.
        for k in 0..<10 { frames.append(segment("junk", 1007 &+ 0x8000_0000 &+ UInt32(k) * 4)) }
        for k in 0..<10 { frames.append(segment("junk", 1007 &+ 0x4000_0000 &+ UInt32(k) * 4)) }
        frames.append(segment("il.php HTTP/1.1\r\n\r\n", 1007))
        for (i, var f) in frames.enumerated() { f.withUnsafeMutableBytes { _ = inspector.inspect($0, number: i + 1, timestampNanoseconds: 0) } }
        inspector.finish()
        #expect(inspector.counters.streamOutOfWindow == 10)
        #expect(inspector.alerts.map { engine.rules[Int($0.rule)].sid } == [1])
    }
}
