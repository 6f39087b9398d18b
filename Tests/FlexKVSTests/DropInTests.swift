import FlexIO
import FlexKVS
import FlexTestSupport
import FlexWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// memcached 1.6 on a loopback port, as the reference flexkvs must match (CI installs
/// it; a test that needs it fails, not skips, when it is missing).
final class ReferenceMemcached {
    let process: ChildProcess
    let port: UInt16

    init(arguments: [String] = []) throws {
        let binary = "/usr/bin/memcached"
        guard FileManager.default.isExecutableFile(atPath: binary) else {
            throw PortError("memcached is not installed (apt-get install memcached)")
        }
        // A port below the kernel's ephemeral range (32768+), so no test socket holds it;
        // if memcached cannot bind it (another run), try the next.
        for attempt in 0..<5 {
            let port = UInt16(20_000 + (Int(getpid()) * 7 + attempt * 1_009) % 10_000)
            let mc = try ChildProcess(binary, ["-p", String(port), "-U", "0", "-l", "127.0.0.1"] + arguments
                                      + (getuid() == 0 ? ["-u", "root"] : []))
            for _ in 0..<40 where mc.process.isRunning {
                if (try? Client(tcp: port)) != nil {
                    process = mc
                    self.port = port
                    return
                }
                usleep(50_000)
            }
            mc.stop(signal: SIGKILL)
        }
        throw PortError("memcached did not start")
    }

    deinit { process.stop(signal: SIGKILL) }
}

extension Client {
    /// Sends `request` then `mn` and returns everything before the `MN` it answers,
    /// with "<closed>" appended if the server closed the connection instead.
    func transcript(_ request: [UInt8]) -> String {
        send(request + Array("mn\r\n".utf8))
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        let end = Array("MN\r\n".utf8)
        while !(out.count >= end.count && Array(out.suffix(end.count)) == end) {
            let n = recv(fd, &buf, buf.count, 0)
            if n <= 0 { return String(decoding: out, as: UTF8.self) + "<closed>" }
            out += buf[..<n]
        }
        return String(decoding: out.dropLast(end.count), as: UTF8.self)
    }
}

/// The cases users hit when they swapped memcached for flexkvs, as data: each request
/// goes to memcached 1.6 and to flexkvs on a fresh connection, in order (earlier cases
/// leave their items behind), and the replies must be the same bytes.
@Suite(.serialized, .tags(.integration)) struct DropInIntegrationTests {
    static let longKey = String(repeating: "k", count: 251)
    static let manyKeys = (0..<2_000).map { "key\($0)" }

    static let cases: [(String, [UInt8])] = {
        func t(_ s: String) -> [UInt8] { Array(s.utf8) }
        var c: [(String, [UInt8])] = [
            ("negative length", t("set k 0 0 -1\r\nabc\r\nget k\r\n")),
            ("length not a number", t("set k 0 0 abc\r\nabc\r\n")),
            ("flags not a number", t("set k 0 abc 1\r\na\r\n")),
            ("length 2^32-1", t("set k 0 0 4294967295\r\nx\r\n")),
            ("length INT_MAX", t("set k 0 0 2147483647\r\n")),
            ("empty cas unique", t("cas foo 0 0 6 \r\nfoobar\r\n")),
            ("ms without length", t("ms k\r\n")),
            ("ms bad length", t("ms k abc\r\n")),
            ("251-byte key set", t("set \(longKey) 0 0 1\r\na\r\n")),
            ("flags past 32 bits", t("set tf 4294967296 0 1\r\na\r\nget tf\r\n")),
            ("noreply silences errors", t("delete k 10 noreply\r\nincr k abc noreply\r\n")),
            ("get with a long key", t("set a 0 0 1\r\n1\r\n")), ("...", t("get a \(longKey)\r\n")),
            ("touch long key", t("touch \(longKey) 1\r\n")),
            ("delete long key", t("delete \(longKey)\r\n")),
            ("flush_all abc", t("flush_all abc\r\n")), ("flush_all invalid", t("flush_all invalid\r\n")),
            ("verbosity invalid", t("verbosity invalid\r\n")), ("mg without key", t("mg\r\n")),
            ("cache_memlimit", t("cache_memlimit 100\r\ncache_memlimit 2\r\ncache_memlimit x\r\n")),
            ("HTTP request", t("GET / HTTP/1.0\r\n")),
            ("too-large SET unlinks the old value", t("set y 0 0 3\r\nMOO\r\nset y 0 0 2000000\r\n")
                + [UInt8](repeating: 0x61, count: 2_000_000) + t("\r\nget y\r\n")),
            ("-I boundary: largest value", t("set b 0 0 1048516\r\n") + [UInt8](repeating: 0x62, count: 1_048_516) + t("\r\n")),
            ("-I boundary: one more", t("set b 0 0 1048517\r\n") + [UInt8](repeating: 0x62, count: 1_048_517) + t("\r\nget q\r\n")),
            ("append past -I", t("append b 0 0 10\r\n0123456789\r\n")),
            ("incr on a number and bytes", t("set n 0 0 9\r\n123\n\u{0}\u{1}abc\r\nincr n 1\r\nget n\r\n")),
            ("incr on a number and a space", t("set m 0 0 4\r\n123 \r\nincr m 5\r\nget m\r\nincr m 1000\r\nget m\r\n")),
            ("incr on signed numbers", t("set p 0 0 3\r\n+7 \r\nincr p 1\r\nset q 0 0 2\r\n-0\r\nincr q 1\r\nset r 0 0 2\r\n-1\r\nincr r 1\r\n")),
            ("incr on empty and spaces", t("set e 0 0 0\r\n\r\nincr e 1\r\nset s 0 0 2\r\n  \r\nincr s 1\r\n")),
            ("bad deltas", t("incr n -1\r\nincr n 18446744073709551616\r\nincr n +2\r\nget n\r\n")),
            ("wrong token counts", t("set k 0 0\r\nget\r\nincr k\r\ndelete\r\ntouch k\r\nverbosity\r\nflush_all 1 2 3\r\n")),
            ("gat without keys", t("gat 10\r\ngat 10 n\r\n")),
            ("short and empty lines", t("\r\n  \r\nx\r\nmz\r\nme\r\n")),
            ("set with noreply", t("set nr 0 0 1 noreply\r\n1\r\nget nr\r\n")),
            ("bad data chunk", t("set bd 0 0 1\r\nab\r\nget bd\r\n")),
            ("23 words and more", t("set w 0 0 1 noreply a b c d e f g h i j k l m n o p q r s t u v w\r\nget w\r\n")),
        ]
        c.append(("2,000-key multiget", manyKeys.map { "set \($0) 0 0 \($0.utf8.count)\r\n\($0)\r\n" }.joined().utf8.map { $0 }
                  + t("get " + manyKeys.joined(separator: " ") + "\r\n")))
        c.append(("get after 2,048 spaces", t("get" + String(repeating: " ", count: 2_048) + "key7\r\n")))
        c.append(("non-get line past 2 KB", t("set " + String(repeating: "x", count: 3_000))))
        return c
    }()

    @Test func repliesMatchMemcachedByteForByte() throws {
        let reference = try ReferenceMemcached()
        let flex = try TestServer()
        var differences: [String] = []
        for (name, request) in Self.cases {
            let expected = try Client(tcp: reference.port).transcript(request)
            let got = try Client(tcp: flex.tcpPort).transcript(request)
            if got != expected {
                differences.append("\(name): memcached \(expected.debugDescription.prefix(300)) flexkvs \(got.debugDescription.prefix(300))")
            }
        }
        #expect(differences.isEmpty, "\(differences.count) of \(Self.cases.count) cases differ:\n\(differences.joined(separator: "\n"))")
    }

    /// Clients that ask for a large value and close without reading it (pymemcache on a
    /// timeout): every session and its pending output is freed at once, so connections
    /// and sessions return to what they were and the server keeps serving.
    @Test(arguments: [KVSServer.Steering.flow, .key])
    func clientsClosingWithRepliesUnreadLeaveNothingBehind(steering: KVSServer.Steering) throws {
        let t = try TestServer(steering: steering, maxConnections: 128)
        let admin = try Client(tcp: t.tcpPort)
        let value = String(repeating: "v", count: 500_000)
        admin.send("set big 0 0 \(value.utf8.count)\r\n\(value)\r\n")
        #expect(admin.receive(until: "\r\n") == "STORED\r\n")
        for i in 0..<60 {
            let c = try Client(tcp: t.tcpPort)
            c.send(String(repeating: "get big\r\n", count: 1 + i % 4))
            usleep(2_000)
        }  // each closes here, replies unread
        /// The sum of a stat over its rows (`tcp_sessions` has one per worker).
        func stat(_ name: String, _ report: String = "") -> Int {
            admin.send(report.isEmpty ? "stats\r\n" : "stats \(report)\r\n")
            return admin.receive(until: "END\r\n").split(separator: "\r\n").compactMap { line -> Int? in
                let parts = line.split(separator: " ")
                guard parts.count == 3, parts[1] == name || parts[1].hasSuffix(":" + name) else { return nil }
                return Int(parts[2])
            }.reduce(0, +)
        }
        // What stays: the admin client, and memcached's one UDP "connection" per thread.
        let baseline = 1 + t.server.configuration.threads
        var connections = 0, sessions = 0
        for _ in 0..<100 {
            connections = stat("curr_connections")
            sessions = stat("tcp_sessions", "steering")
            if connections == baseline && sessions == 1 { break }
            usleep(10_000)
        }
        #expect(connections == baseline, "curr_connections \(connections): closed clients still counted")
        #expect(sessions == 1, "\(sessions) sessions held by workers for 1 open connection")
        admin.send("get big\r\n")
        #expect(admin.receive(until: "END\r\n").utf8.count == value.utf8.count + 27)  // VALUE big 0 500000, the value, END
    }

    /// A client that pipelines more replies than it reads for a while (pymemcache's
    /// get_many of large values, a slow reader) gets every reply: the server stops
    /// reading its requests while the replies wait, instead of closing it.
    @Test(arguments: [KVSServer.Steering.flow, .key])
    func slowReadersGetEveryReply(steering: KVSServer.Steering) throws {
        let t = try TestServer(steering: steering)
        let value = String(repeating: "v", count: 500_000)
        let admin = try Client(tcp: t.tcpPort)
        admin.send("set big 0 0 \(value.utf8.count)\r\n\(value)\r\n")
        #expect(admin.receive(until: "\r\n") == "STORED\r\n")
        let slow = try Client(tcp: t.tcpPort)
        slow.send(String(repeating: "get big\r\n", count: 24) + "version\r\n")
        usleep(500_000)
        let all = slow.receive(until: "VERSION \(KVSContext.version)\r\n")
        #expect(all.components(separatedBy: "VALUE big 0 500000\r\n").count - 1 == 24)
        #expect(all.utf8.count == 24 * (value.utf8.count + 27) + "VERSION \(KVSContext.version)\r\n".utf8.count)
    }

    /// One get of many large values, read late: the reply is built a budget at a time
    /// (the rest of the key list waits), and every value arrives, in order.
    @Test(arguments: [KVSServer.Steering.flow, .key])
    func aGetOfManyLargeValuesArrivesWhole(steering: KVSServer.Steering) throws {
        let t = try TestServer(steering: steering)
        let c = try Client(tcp: t.tcpPort)
        let keys = (0..<12).map { "large\($0)" }
        for (i, k) in keys.enumerated() {
            let value = String(repeating: Character(UnicodeScalar(97 + i)!), count: 400_000)
            c.send("set \(k) 0 0 \(value.utf8.count)\r\n\(value)\r\n")
            #expect(c.receive(until: "\r\n") == "STORED\r\n")
        }
        c.send("get " + (keys + keys).joined(separator: " ") + "\r\nversion\r\n")
        usleep(300_000)
        let reply = c.receive(until: "VERSION \(KVSContext.version)\r\n")
        let expected = (keys + keys).enumerated().map { i, k in
            "VALUE \(k) 0 400000\r\n" + String(repeating: Character(UnicodeScalar(97 + i % 12)!), count: 400_000) + "\r\n"
        }.joined() + "END\r\nVERSION \(KVSContext.version)\r\n"
        #expect(reply.utf8.count == expected.utf8.count)
        #expect(reply == expected)
    }

    /// Key steering, a pipeline mixing requests other workers own (forwarded) with large
    /// local ones past the output budget: every reply comes back in order (a worker
    /// must not spin on replies it cannot send before the forwarded ones return).
    @Test func forwardedAndLargeLocalRepliesKeepOrder() throws {
        let t = try TestServer(threads: 2, steering: .key)
        let store = t.server.context.store
        func key(on partition: Int, _ n: Int) -> String {
            var i = 0
            while true {
                let k = "p\(partition)-\(n)-\(i)"
                if Array(k.utf8).withUnsafeBytes({ store.partitionIndex(for: KVStore.hash($0)) }) == partition { return k }
                i += 1
            }
        }
        let c = try Client(tcp: t.tcpPort)
        var pipeline = "", expected = ""
        for n in 0..<6 {
            for partition in 0..<2 {
                let k = key(on: partition, n)
                let value = String(repeating: "\(partition)", count: n % 2 == 0 ? 10 : 600_000)
                c.send("set \(k) 0 0 \(value.utf8.count)\r\n\(value)\r\n")
                #expect(c.receive(until: "\r\n") == "STORED\r\n")
                pipeline += "get \(k)\r\n"
                expected += "VALUE \(k) 0 \(value.utf8.count)\r\n\(value)\r\nEND\r\n"
            }
        }
        c.send(pipeline + "version\r\n")
        let reply = c.receive(until: "VERSION \(KVSContext.version)\r\n")
        #expect(reply == expected + "VERSION \(KVSContext.version)\r\n")
    }

    /// -c is one server-wide limit: the client past it gets memcached's reply and is
    /// closed, counted in rejected_connections; the others keep being served.
    @Test func connectionLimitIsServerWideWithMemcachedsReply() throws {
        let t = try TestServer(threads: 2, maxConnections: 5)
        let clients = try (0..<5).map { _ in try Client(tcp: t.tcpPort) }
        for c in clients { c.send("version\r\n"); #expect(c.receive(until: "\r\n").hasPrefix("VERSION")) }
        let extra = try Client(tcp: t.tcpPort)
        #expect(extra.receive(until: "\r\n") == "ERROR Too many open connections\r\n")
        #expect(extra.isClosedByServer())
        clients[0].send("stats\r\n")
        let stats = clients[0].receive(until: "END\r\n")
        #expect(stats.contains("STAT rejected_connections 1\r\n"), "\(stats)")
        #expect(stats.contains("STAT max_connections 5\r\n"))
    }

    /// memcached reads UDP requests of up to 64 KB in one datagram, and looks only at
    /// the datagram count of the frame header, not the sequence number.
    @Test func udpTakesLargeRequestsAndAnySequenceNumber() throws {
        let t = try TestServer()
        let c = try Client(udp: t.udpPort)
        let value = String(repeating: "u", count: 2_000)
        c.send([0, 7, 0, 0, 0, 1, 0, 0] + Array("set big 0 0 \(value.utf8.count)\r\n\(value)\r\n".utf8))
        let stored = try #require(c.receiveDatagram(), "no reply to a 2 KB set")
        #expect(Array(stored.dropFirst(8)) == Array("STORED\r\n".utf8))
        c.send([0, 8, 0, 1, 0, 1, 0, 0] + Array("get nothing\r\n".utf8))
        let reply = try #require(c.receiveDatagram(), "no reply to sequence 1 of 1")
        #expect(Array(reply.prefix(2)) == [0, 8])
        #expect(Array(reply.dropFirst(8)) == Array("END\r\n".utf8))
    }

    /// memcached's -s and -a: a Unix domain socket with the given permissions, served
    /// like TCP by every worker.
    @Test func unixDomainSocket() throws {
        let path = NSTemporaryDirectory() + "flexkvs-test-\(getpid()).sock"
        var c = KVSServer.Configuration()
        c.threads = 2
        c.unixSocket = (path, 0o770)
        let server = try KVSServer(c)
        server.start()
        defer { server.stop() }
        var st = stat()
        #expect(stat(path, &st) == 0 && st.st_mode & 0o777 == 0o770)
        for _ in 0..<4 {  // several connections: any worker may accept them
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(fd) }
            var a = sockaddr_un()
            a.sun_family = sa_family_t(AF_UNIX)
            withUnsafeMutableBytes(of: &a.sun_path) { p in _ = path.utf8CString.withUnsafeBytes { memcpy(p.baseAddress!, $0.baseAddress!, $0.count) } }
            let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
            try #require(rc == 0, "connect: errno \(errno)")
            let request = Array("set u 0 0 2\r\nok\r\nget u\r\n".utf8)
            _ = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
            var reply: [UInt8] = []
            var buf = [UInt8](repeating: 0, count: 4096)
            while !String(decoding: reply, as: UTF8.self).hasSuffix("END\r\n") {
                let n = recv(fd, &buf, buf.count, 0)
                if n <= 0 { break }
                reply += buf[..<n]
            }
            #expect(String(decoding: reply, as: UTF8.self) == "STORED\r\nVALUE u 0 2\r\nok\r\nEND\r\n")
        }
    }

    /// flush_all with an absolute unix time flushes what was stored before it, then.
    @Test func flushAllAtAnAbsoluteTime() throws {
        let t = try TestServer()
        let c = try Client(tcp: t.tcpPort)
        c.send("set fa 0 0 1\r\nx\r\n")
        #expect(c.receive(until: "\r\n") == "STORED\r\n")
        let at = Int(Date().timeIntervalSince1970) + 2
        c.send("flush_all \(at)\r\nget fa\r\n")
        #expect(c.receive(until: "END\r\n") == "OK\r\nVALUE fa 0 1\r\nx\r\nEND\r\n")
        usleep(3_600_000)  // the server counts whole seconds: the flush may come up to 3 s after `at - 2`
        c.send("get fa\r\n")
        #expect(c.receive(until: "END\r\n") == "END\r\n")
    }
}
