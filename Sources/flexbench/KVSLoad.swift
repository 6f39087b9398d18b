import CFlexSys
import FlexIO
import FlexWire
import Foundation
import Histogram
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The memcached load generator's engine: `threads` client threads, each driving its
/// share of `connections` sockets, closed loop (each socket keeps `depth` requests
/// outstanding) or open loop (requests sent on a fixed schedule, latency measured from
/// the scheduled time so a slow server cannot hide its queueing).
struct KVSLoad {
    var server: (IPv4Address, UInt16)
    var format: WireFormat
    var workload: KVSWorkload
    var connections = 4
    var depth = 8
    var threads = 1
    var warmup = 1.0
    var duration = 5.0
    /// Requests per second over all threads; 0: closed loop.
    var rate = 0.0
    var seed: UInt64 = 1
    /// UDP over a DPDK port instead of kernel sockets (one client thread).
    var link: DPDKDatagramLink?

    struct Result {
        var operations: UInt64 = 0
        /// GETs that found / did not find their key.
        var hits: UInt64 = 0
        var misses: UInt64 = 0
        var timeouts: UInt64 = 0
        var seconds = 0.0
        var latency = Histogram<UInt64>(highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: .three)

        var throughput: Double { seconds > 0 ? Double(operations) / seconds : 0 }

        mutating func merge(_ o: Result) {
            operations += o.operations
            hits += o.hits
            misses += o.misses
            timeouts += o.timeouts
            seconds = max(seconds, o.seconds)
            latency.add(o.latency)
        }

        /// "123456 ops/s, p50 12 us, ..." (microseconds).
        var summary: String {
            let p = { (q: Double) in String(latency.valueAtPercentile(q)) }
            return String(format: "%.0f ops/s", throughput)
                + ", latency us p50 \(p(50)) p90 \(p(90)) p99 \(p(99)) p99.9 \(p(99.9))"
                + ", GET hits \(hits) misses \(misses), UDP timeouts \(timeouts)"
        }
    }

    /// Stores every key once over TCP (text protocol, noreply, then a fence).
    func preload() throws {
        let c = try Self.connect(server, udp: false, blocking: true)
        defer { close(c) }
        var out: [UInt8] = []
        for i in 0..<workload.keys {
            out += Array("set ".utf8) + workload.key(i) + Array(" 0 0 \(workload.valueSize) noreply\r\n".utf8) + workload.value + [13, 10]
            if out.count > 1 << 16 || i == workload.keys - 1 {
                try Self.sendAll(c, out)
                out.removeAll(keepingCapacity: true)
            }
        }
        try Self.sendAll(c, Array("version\r\n".utf8))
        var buf = [UInt8](repeating: 0, count: 4096)
        var got: [UInt8] = []
        while !String(decoding: got, as: UTF8.self).contains("VERSION") {
            let n = recv(c, &buf, buf.count, 0)
            guard n > 0 else { throw LoadError("preload: the server closed the connection") }
            got += buf[..<n]
        }
    }

    /// Stores every key once over UDP (the format's SET), `depth` outstanding per
    /// socket: the preload when the server is reached over DPDK. Lost datagrams count
    /// as timeouts.
    func preloadOverUDP() throws -> Result {
        try DPDKEnvironment.asLcore { try runThread(index: 0, sockets: connections, measureFrom: 0, end: .max, preloading: true) }
    }

    func run() throws -> Result {
        let perThread = max(1, connections / threads)
        let outcomes = Mutex<(results: [Result], failure: String?)>(([], nil))
        let group = DispatchGroup()
        let start = monotonicNanoseconds()
        let measureFrom = start + UInt64(warmup * 1e9)
        let end = measureFrom + UInt64(duration * 1e9)
        for t in 0..<threads {
            group.enter()
            Thread {
                defer { group.leave() }
                do {
                    let measure = { try runThread(index: t, sockets: perThread, measureFrom: measureFrom, end: end) }
                    let r = try link != nil ? DPDKEnvironment.asLcore(measure) : measure()
                    outcomes.withLock { $0.results.append(r) }
                } catch {
                    outcomes.withLock { $0.failure = "\(error)" }
                }
            }.start()
        }
        group.wait()
        let (results, failure) = outcomes.withLock { ($0.results, $0.failure) }
        if let failure { throw LoadError(failure) }
        var total = Result()
        results.forEach { total.merge($0) }
        total.seconds = duration
        return total
    }

    /// One connection's state.
    final class Conn {
        let index: Int
        let fd: Int32
        var out: [UInt8] = []
        var outSent = 0
        var input: [UInt8] = []
        var parsed = 0
        /// TCP: send times (low bit: is a GET) in request order. UDP: the same by
        /// request id (0 = free).
        var fifo: [UInt64] = []
        var fifoHead = 0
        var udpSent: [UInt64]
        var inflight = 0
        var nextID: UInt16 = 1
        /// UDP: lengths of the datagrams queued in `out`.
        var datagramLengths: [Int] = []

        init(index: Int, fd: Int32, udp: Bool) {
            self.index = index
            self.fd = fd
            udpSent = udp ? [UInt64](repeating: 0, count: 65536) : []
        }
    }

    func runThread(index: Int, sockets: Int, measureFrom: UInt64, end: UInt64, preloading: Bool = false) throws -> Result {
        var rng = Xorshift(seed: seed &* 0x9E37_79B9 &+ UInt64(index) &+ 1)
        let conns = try (0..<sockets).map { i in
            Conn(index: i, fd: link != nil ? -1 : try Self.connect(server, udp: format.isUDP, blocking: false), udp: format.isUDP)
        }
        defer { conns.forEach { if $0.fd >= 0 { close($0.fd) } } }
        var nextPreload = 0
        var result = Result()
        var fds = conns.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
        let interval = rate > 0 ? UInt64(1e9 / (rate / Double(threads))) : 0
        var nextSend = monotonicNanoseconds()
        var roundRobin = 0
        var lastSweep = monotonicNanoseconds()
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        // UDP receive: 64 datagram buffers for recvmmsg.
        let rxArena = UnsafeMutableRawPointer.allocate(byteCount: 64 * 2048, alignment: 64)
        let rxDatagrams = UnsafeMutablePointer<cflex_datagram>.allocate(capacity: 64)
        defer { rxArena.deallocate(); rxDatagrams.deallocate() }
        for k in 0..<64 {
            rxDatagrams[k] = cflex_datagram(data: rxArena + k * 2048, capacity: 2048, length: 0, peer: sockaddr_in())
        }
        let serverAddress = Self.address(server)
        /// Sends a connection's queued datagrams with sendmmsg (what does not go now is
        /// dropped and shows up as a timeout).
        func flushDatagrams(_ c: Conn) throws {
            if let link {
                c.out.withUnsafeBytes { link.send(socket: c.index, payloads: $0, lengths: c.datagramLengths) }
                c.out.removeAll(keepingCapacity: true)
                c.datagramLengths.removeAll(keepingCapacity: true)
                return
            }
            var batch = [cflex_datagram]()
            batch.reserveCapacity(c.datagramLengths.count)
            try c.out.withUnsafeMutableBytes { b in
                var offset = 0
                for len in c.datagramLengths {
                    batch.append(cflex_datagram(data: b.baseAddress! + offset, capacity: UInt32(len), length: UInt32(len), peer: serverAddress))
                    offset += len
                }
                var sent = 0
                while sent < batch.count {
                    let rc = batch.withUnsafeMutableBufferPointer { cflex_send_batch(c.fd, $0.baseAddress! + sent, UInt32($0.count - sent)) }
                    if rc < 0 { throw LoadError("sendmmsg: \(String(cString: strerror(-rc)))") }
                    if rc == 0 { break }
                    sent += Int(rc)
                }
            }
            c.out.removeAll(keepingCapacity: true)
            c.datagramLengths.removeAll(keepingCapacity: true)
        }

        /// Queues one request on `c`; false when a preload has issued every key.
        func issue(_ c: Conn, at time: UInt64) -> Bool {
            let get: Bool
            let key: ArraySlice<UInt8>
            if preloading {
                guard nextPreload < workload.keys else { return false }
                get = false
                key = workload.key(nextPreload)
                nextPreload += 1
            } else {
                get = rng.unit() < workload.getRatio
                key = workload.key(workload.sampleKey(&rng))
            }
            if format.isUDP {
                var id = c.nextID
                while c.udpSent[Int(id)] != 0 { id &+= 1 }
                c.nextID = id &+ 1
                // Datagrams queue back to back in `out`, sent with one sendmmsg.
                let start = c.out.count
                c.out += [UInt8(id >> 8), UInt8(id & 255), 0, 0, 0, 1, 0, 0]
                format.appendRequest(&c.out, get: get, key: key, value: workload.value, opaque: UInt32(id))
                c.datagramLengths.append(c.out.count - start)
                c.udpSent[Int(id)] = time & ~3 | (get ? 1 : 0) | 2
            } else {
                format.appendRequest(&c.out, get: get, key: key, value: workload.value, opaque: 0)
                c.fifo.append(time & ~3 | (get ? 1 : 0))
            }
            c.inflight += 1
            return true
        }

        /// A reply datagram for `c`: completes its request when it is the last one.
        func received(_ c: Conn, _ d: UnsafeRawBufferPointer, at t: UInt64) {
            guard d.count >= 8, d.count <= 2048 else { return }
            let id = Int(d[0]) << 8 | Int(d[1])
            let seq = Int(d[2]) << 8 | Int(d[3]), count = Int(d[4]) << 8 | Int(d[5])
            guard seq == count - 1, c.udpSent[id] != 0 else { return }
            var hit = false
            _ = format.responseLength(UnsafeRawBufferPointer(rebasing: d[8...]), from: 0, hit: &hit)
            complete(c, sent: c.udpSent[id], hit: hit, now: t)
            c.udpSent[id] = 0
        }

        func complete(_ c: Conn, sent: UInt64, hit: Bool, now: UInt64) {
            c.inflight -= 1
            guard now >= measureFrom && now < end else { return }
            result.operations += 1
            if sent & 1 == 1 { if hit { result.hits += 1 } else { result.misses += 1 } }
            _ = result.latency.record(max(1, (now &- (sent & ~3)) / 1000))
        }

        while true {
            let now = monotonicNanoseconds()
            if now >= end { break }
            if preloading && nextPreload == workload.keys && conns.allSatisfy({ $0.inflight == 0 }) { break }
            if interval == 0 {
                for c in conns { while c.inflight < depth, issue(c, at: now) {} }
            } else {
                while nextSend <= now {
                    let c = conns[roundRobin % conns.count]
                    roundRobin += 1
                    if c.inflight < 4096 { _ = issue(c, at: nextSend) }
                    nextSend += interval
                }
            }
            if format.isUDP {
                for c in conns where !c.datagramLengths.isEmpty { try flushDatagrams(c) }
            }
            for c in conns where !format.isUDP && c.outSent < c.out.count {
                let n = c.out.withUnsafeBytes { send(c.fd, $0.baseAddress! + c.outSent, $0.count - c.outSent, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if n > 0 { c.outSent += n }
                if n < 0 && errno != EAGAIN { throw LoadError("send: \(String(cString: strerror(errno)))") }
                if c.outSent == c.out.count { c.out.removeAll(keepingCapacity: true); c.outSent = 0 }
            }
            if let link {
                // Kernel bypass: poll the port (no sockets, no sleeping).
                let t = monotonicNanoseconds()
                link.receive { socket, d in if socket < conns.count { received(conns[socket], d, at: t) } }
            } else {
                _ = poll(&fds, nfds_t(fds.count), interval > 0 ? 0 : 1)
            }
            for (i, c) in conns.enumerated() where fds[i].revents & Int16(POLLIN) != 0 {
                if format.isUDP {
                    let n = Int(max(0, cflex_recv_batch(c.fd, rxDatagrams, 64)))
                    let t = monotonicNanoseconds()
                    for k in 0..<n {
                        received(c, UnsafeRawBufferPointer(start: rxDatagrams[k].data, count: Int(rxDatagrams[k].length)), at: t)
                    }
                    continue
                }
                let n = recv(c.fd, &buf, buf.count, Int32(MSG_DONTWAIT))
                if n == 0 { throw LoadError("the server closed a connection") }
                guard n > 0 else { continue }
                let t = monotonicNanoseconds()
                c.input += buf[..<n]
                var hit = false
                while let len = c.input.withUnsafeBytes({ format.responseLength($0, from: c.parsed, hit: &hit) }) {
                    c.parsed += len
                    complete(c, sent: c.fifo[c.fifoHead], hit: hit, now: t)
                    c.fifoHead += 1
                }
                if c.parsed == c.input.count { c.input.removeAll(keepingCapacity: true); c.parsed = 0 }
                if c.fifoHead > 4096 { c.fifo.removeFirst(c.fifoHead); c.fifoHead = 0 }
            }
            // UDP requests lost for 500 ms are counted as timeouts and their slots reused.
            if format.isUDP && now - lastSweep > 100_000_000 {
                lastSweep = now
                for c in conns {
                    for id in 0..<65536 where c.udpSent[id] != 0 && now &- (c.udpSent[id] & ~3) > 500_000_000 {
                        c.udpSent[id] = 0
                        c.inflight -= 1
                        if now >= measureFrom { result.timeouts += 1 }
                    }
                }
            }
        }
        return result
    }

    static func address(_ server: (IPv4Address, UInt16)) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = server.1.bigEndian
        a.sin_addr.s_addr = server.0.value.bigEndian
        return a
    }

    static func connect(_ server: (IPv4Address, UInt16), udp: Bool, blocking: Bool) throws -> Int32 {
        let fd = socket(AF_INET, Int32(udp ? SOCK_DGRAM.rawValue : SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw LoadError("socket: \(String(cString: strerror(errno)))") }
        var a = address(server)
        let rc = withUnsafePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        guard rc == 0 else {
            close(fd)
            throw LoadError("connect \(server.0):\(server.1): \(String(cString: strerror(errno)))")
        }
        if !udp {
            var one: Int32 = 1
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if !blocking { _ = fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) }
        return fd
    }

    static func sendAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        var off = 0
        while off < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + off, $0.count - off, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw LoadError("send: \(String(cString: strerror(errno)))") }
            off += n
        }
    }
}

struct LoadError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}
