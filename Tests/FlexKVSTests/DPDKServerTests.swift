import FlexTestSupport
import FlexWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// flexkvs with `--io dpdk`: over net_af_packet a kernel client in another network
/// namespace reaches it by ARP and UDP; over net_memif `flexbench kvs` drives it from
/// another process with no kernel in between.
@Suite(.serialized, .tags(.integration)) struct DPDKServerIntegrationTests {
    static let tag = "kvsdpdk\(getpid())"

    /// A UDP socket in this (the root) namespace, bound to `local`, talking to `server`.
    final class UDPClient {
        let fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        var nextID: UInt16 = 1

        init(to server: IPv4Address, port: UInt16) throws {
            var a = sockaddr_in()
            a.sin_family = sa_family_t(AF_INET)
            a.sin_port = port.bigEndian
            a.sin_addr.s_addr = server.value.bigEndian
            let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            guard rc == 0 else { throw TestSetupError("connect: errno \(errno)") }
            var tv = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }

        deinit { close(fd) }

        /// Sends `request` in one datagram with memcached's frame header and returns the
        /// reply's body, its datagrams joined in order (nil on timeout). Retries twice:
        /// the first datagram may wait for ARP.
        func exchange(_ request: String) -> String? {
            let id = nextID
            nextID &+= 1
            let datagram = [UInt8(id >> 8), UInt8(id & 255), 0, 0, 0, 1, 0, 0] + Array(request.utf8)
            var buf = [UInt8](repeating: 0, count: 2048)
            for _ in 0..<3 {
                _ = datagram.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, 0) }
                var parts: [Int: [UInt8]] = [:]
                while true {
                    let n = recv(fd, &buf, buf.count, 0)
                    if n <= 0 { break }
                    guard n >= 8, buf[0] == UInt8(id >> 8), buf[1] == UInt8(id & 255) else { continue }
                    parts[Int(buf[2]) << 8 | Int(buf[3])] = Array(buf[8..<n])
                    if parts.count == Int(buf[4]) << 8 | Int(buf[5]) {
                        return String(decoding: parts.keys.sorted().flatMap { parts[$0]! }, as: UTF8.self)
                    }
                }
            }
            return nil
        }
    }

    /// The server in namespace B on one end of a veth (net_af_packet, two queue pairs,
    /// key steering); this process's kernel on the other end resolves it by ARP and
    /// stores and reads keys that land on both workers.
    @Test func kernelClientInAnotherNamespaceReachesItOverAfPacket() throws {
        guard canMakeNamespaces else {
            Issue.record("needs root and iproute2 (CI has both)")
            return
        }
        let flexkvs = try builtExecutable("flexkvs")
        let id = getpid() % 100_000
        let ns = "kvsB\(id)", va = "kva\(id)", vb = "kvb\(id)"
        let subnet = 100 + Int(id % 100)
        let serverIP = IPv4Address(198, 18, UInt8(subnet), 2)
        defer { _ = try? ip("link del \(va)"); _ = try? ip("netns del \(ns)") }
        try ip("netns add \(ns)")
        try ip("link add \(va) type veth peer name \(vb)")
        try ip("link set \(vb) netns \(ns)")
        try ip("addr add 198.18.\(subnet).1/24 dev \(va)")
        try ip("link set \(va) up")
        try ip("-n \(ns) link set \(vb) up")
        try ip("-n \(ns) link set lo up")  // TCP listens on the namespace's 127.0.0.1

        let server = try ChildProcess("/usr/sbin/ip", [
            "netns", "exec", ns, flexkvs, "-U", "11311", "-p", "11411", "-l", serverIP.description, "-t", "2",
            "--steering", "key", "--io", "dpdk", "--eal",
            "--no-huge --no-pci -m 256 --file-prefix=\(Self.tag)af --log-level=3 --vdev=net_af_packet0,iface=\(vb),qpairs=2",
        ])
        defer { server.stop() }
        #expect(server.waitForOutput("io dpdk", timeout: 30), "\(server.output)")
        let banner = server.output
        let mac = try #require(banner.split(separator: " ").drop { $0 != "mac" }.dropFirst().first.map { $0.trimmingCharacters(in: CharacterSet(charactersIn: ",")) }, "\(banner)")

        let client = try UDPClient(to: serverIP, port: 11311)
        #expect(client.exchange("set hello 7 0 5\r\nworld\r\n") == "STORED\r\n")
        #expect(client.exchange("get hello\r\n") == "VALUE hello 7 5\r\nworld\r\nEND\r\n")
        // Enough keys that both workers own some: each reply must match its request.
        var wrong = 0
        for i in 0..<200 where client.exchange("set key\(i) 0 0 \(String(i).count)\r\n\(i)\r\n") != "STORED\r\n" { wrong += 1 }
        for i in 0..<200 where client.exchange("get key\(i)\r\n") != "VALUE key\(i) 0 \(String(i).count)\r\n\(i)\r\nEND\r\n" { wrong += 1 }
        #expect(wrong == 0)
        // The kernel learnt the server's MAC from flexkvs's ARP reply.
        let neighbours = try ip("neigh show \(serverIP) dev \(va)")
        #expect(neighbours.contains(mac), "\(neighbours) vs \(mac)")
        // Both workers served keys (key steering redirected between them).
        let stats = client.exchange("stats steering\r\n") ?? ""
        let counters = Dictionary(stats.split(separator: "\r\n").compactMap { line -> (String, Int)? in
            let f = line.split(separator: " ")
            return f.count == 3 ? (String(f[1]), Int(f[2]) ?? -1) : nil
        }, uniquingKeysWith: { a, _ in a })
        #expect(counters["worker:0:requests", default: 0] > 0 && counters["worker:1:requests", default: 0] > 0, "\(stats)")
        #expect(counters["worker:0:arp_answered", default: 0] + counters["worker:1:arp_answered", default: 0] >= 1, "\(stats)")
        #expect(stats.contains("STAT worker:0:core_warm_rounds off\r\n"), "a polling worker never sleeps: no warmer")
        #expect(server.stop(signal: SIGINT) == 0, "\(server.output)")
        #expect(server.output.contains("flexkvs: stopped"))
    }

    /// `flexbench kvs` over net_memif (kernel bypass on both ends): it learns the
    /// server's MAC by ARP, preloads every key over UDP and runs the workload with no
    /// loss and no misses; the stored items are then visible over kernel TCP.
    @Test func flexbenchDrivesItOverMemif() throws {
        let flexkvs = try builtExecutable("flexkvs"), bench = try builtExecutable("flexbench")
        let socketPath = "/tmp/\(Self.tag)-memif.sock"
        unlink(socketPath)
        let tcpPort = UInt16(20_000 + Int(getpid()) % 10_000)
        let server = try ChildProcess(flexkvs, [
            "-U", "11311", "-p", String(tcpPort), "-l", "198.18.0.2", "--steering", "dma", "--io", "dpdk", "--eal",
            "--no-huge --no-pci -m 256 --file-prefix=\(Self.tag)srv --log-level=3 --vdev=net_memif0,role=server,socket=\(socketPath),socket-abstract=no",
        ])
        defer { server.stop(); unlink(socketPath) }
        #expect(server.waitForOutput("io dpdk", timeout: 30), "\(server.output)")
        let (rc, out) = try runProcess(bench, [
            "kvs", "--server", "198.18.0.2:11311", "--format", "udp-binary", "--keys", "2000", "--duration", "1", "--warmup", "0.2",
            "--io", "dpdk", "--eal", "--no-huge --no-pci -m 256 --file-prefix=\(Self.tag)cli --log-level=3 --vdev=net_memif0,role=client,socket=\(socketPath),socket-abstract=no",
        ], timeout: 60)
        #expect(rc == 0, "\(out)")
        #expect(out.contains("(ARP)"), "\(out)")
        #expect(out.contains("preloaded 2000 keys over UDP, 0 lost"), "\(out)")
        #expect(out.contains("misses 0, UDP timeouts 0"), "\(out)")
        let ops = out.split(separator: "\n").first { $0.contains("ops/s") }.flatMap { Double($0.split(separator: " ")[1]) } ?? 0
        #expect(ops > 1000, "\(out)")
        // Key 1999 (32 bytes: "k" and zero-padded digits), stored by the placed-SET path.
        let key = "k" + String(repeating: "0", count: 27) + "1999"
        let c = try Client(tcp: tcpPort)
        c.send("get \(key)\r\n")
        let value = c.receive(until: "END\r\n")
        #expect(value.hasPrefix("VALUE \(key) 0 64\r\nabcdefghijklmnopqrstuvwxyz"), "\(value.prefix(200))")
        c.send("stats steering\r\n")
        let reply = c.receive(until: "END\r\n")
        #expect(reply.contains("STAT worker:0:arp_answered 1"), "\(reply)")
        #expect(reply.contains("STAT worker:0:placed_sets"), "\(reply)")
    }

    /// A memif peer that sends requests and never reads a reply fills the ring the
    /// server answers on: the server drops and counts those replies (it trapped on its
    /// full reply batch before), and serves the next client as before.
    @Test func aMemifClientThatStopsReadingCostsRepliesNotTheServer() throws {
        let flexkvs = try builtExecutable("flexkvs"), bench = try builtExecutable("flexbench")
        let socketPath = "/tmp/\(Self.tag)-deaf.sock"
        unlink(socketPath)
        let tcpPort = UInt16(20_000 + (Int(getpid()) + 1) % 10_000)
        let server = try ChildProcess(flexkvs, [
            "-U", "11312", "-p", String(tcpPort), "-l", "198.18.0.2", "--steering", "key", "--io", "dpdk", "--eal",
            "--no-huge --no-pci -m 256 --file-prefix=\(Self.tag)dsrv --log-level=3 --vdev=net_memif0,role=server,socket=\(socketPath),socket-abstract=no",
        ])
        defer { server.stop(); unlink(socketPath) }
        #expect(server.waitForOutput("io dpdk", timeout: 30), "\(server.output)")
        let client = { (extra: [String]) throws -> (Int32, String) in
            try runProcess(bench, ["kvs", "--server", "198.18.0.2:11312", "--format", "udp-binary", "--keys", "2000", "--io", "dpdk",
                                   "--eal", "--no-huge --no-pci -m 256 --file-prefix=\(Self.tag)dcli --log-level=3 --vdev=net_memif0,role=client,socket=\(socketPath),socket-abstract=no"]
                           + extra, timeout: 60)
        }
        let (rc, out) = try client(["--stop-reading", "--no-preload", "--duration", "0.5"])
        #expect(rc == 0, "\(out)")
        #expect(out.contains("without reading a reply"), "\(out)")
        #expect(server.process.isRunning, "\(server.output.suffix(2000))")
        let c = try Client(tcp: tcpPort)
        c.send("stats steering\r\n")
        let stats = c.receive(until: "END\r\n")
        let dropped = stats.split(separator: "\r\n").first { $0.contains("worker:0:transmit_dropped") }
            .flatMap { Int($0.split(separator: " ").last ?? "") } ?? 0
        #expect(dropped > 1000, "\(stats)")
        let (rc2, out2) = try client(["--duration", "0.5", "--warmup", "0.1"])
        #expect(rc2 == 0 && out2.contains("misses 0, UDP timeouts 0"), "\(out2)")
    }
}
