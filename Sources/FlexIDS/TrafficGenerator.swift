import FlexIO
import FlexWire
import Foundation

/// Writes a synthetic but protocol-faithful trace: TCP flows with handshakes, segments
/// of at most one MSS with running sequence numbers and teardowns, both directions;
/// UDP request/response pairs. The mix is web-heavy (HTTP and TLS), with DNS, SMTP, SSH,
/// FTP, MySQL, IRC and NTP. A share of the flows carries payloads that trigger
/// `Configs/ids/flex-sample.rules` (scanners, injections, malicious bodies, banners,
/// suspicious names), and a few carry ET Open favourites (scanner user agents).
/// Clients and servers sit on both sides of 10.0.0.0/8. Same seed, same bytes.
public struct TrafficGenerator {
    public var flows: Int
    public var triggerShare: Double
    var rng: SplitMix64
    var packets: [(time: UInt64, frame: [UInt8])] = []
    var clock: UInt64 = 1_700_000_000 * 1_000_000_000

    public init(flows: Int, seed: UInt64 = 1, triggerShare: Double = 0.04) {
        self.flows = flows
        self.triggerShare = triggerShare
        rng = SplitMix64(seed: seed)
    }

    /// Generates the trace and writes it to `path`; returns the number of packets.
    @discardableResult
    public mutating func write(to path: String) throws -> Int {
        packets.removeAll()
        for _ in 0..<flows {
            clock += UInt64(rng.next(below: 2_000_000)) + 50_000  // a new flow every ~1 ms
            generateFlow(start: clock)
        }
        packets.sort { $0.time < $1.time }
        let writer = try PcapWriter(path: path)
        for p in packets { writer.write(p.frame, timestampNanoseconds: p.time) }
        writer.flush()
        return packets.count
    }

    // MARK: Flows

    mutating func generateFlow(start: UInt64) {
        let trigger = rng.nextUnit() < triggerShare
        let r = rng.nextUnit()
        switch r {
        case ..<0.30: http(start, trigger: trigger)
        case ..<0.52: tls(start, trigger: trigger)
        case ..<0.72: dns(start, trigger: trigger)
        case ..<0.79: smtp(start, trigger: trigger)
        case ..<0.85: ssh(start, trigger: trigger)
        case ..<0.89: ftp(start, trigger: trigger)
        case ..<0.92: mysql(start, trigger: trigger)
        case ..<0.94: irc(start)
        case ..<0.97: ntp(start, trigger: trigger)
        default: probe(start, trigger: trigger)
        }
    }

    mutating func internalHost() -> IPv4Address { IPv4Address(10, UInt8(1 + rng.next(below: 3)), UInt8(rng.next(below: 256)), UInt8(1 + rng.next(below: 254))) }
    mutating func externalHost() -> IPv4Address {
        let nets: [(UInt8, UInt8)] = [(93, 184), (151, 101), (203, 0), (198, 51), (104, 16), (172, 217), (185, 199)]
        let n = nets[rng.next(below: nets.count)]
        return IPv4Address(n.0, n.1, UInt8(rng.next(below: 256)), UInt8(1 + rng.next(below: 254)))
    }
    mutating func ephemeralPort() -> UInt16 { UInt16(32768 + rng.next(below: 28000)) }

    /// A client and server: inbound (external client to an internal server) or outbound.
    mutating func endpoints(port: UInt16, inbound: Bool) -> FrameBuilder.Endpoints {
        let client = inbound ? externalHost() : internalHost()
        let server = inbound ? internalHost() : externalHost()
        return FrameBuilder.Endpoints(sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), destinationMAC: MACAddress(2, 0, 0, 0, 0, 2),
                                      source: client, destination: server, sourcePort: ephemeralPort(), destinationPort: port)
    }

    /// One TCP connection: handshake, the exchanges (true: client speaks), teardown.
    mutating func tcpFlow(_ e: FrameBuilder.Endpoints, start: UInt64, _ exchanges: [(fromClient: Bool, data: [UInt8])]) {
        var t = start
        let rtt = UInt64(200_000 + rng.next(below: 30_000_000))
        var seq = (client: UInt32(truncatingIfNeeded: rng.next(below: 1 << 31)), server: UInt32(truncatingIfNeeded: rng.next(below: 1 << 31)))
        func emit(_ fromClient: Bool, _ payload: ArraySlice<UInt8>, _ flags: TCPHeader.Flags) {
            var buffer = [UInt8](repeating: 0, count: FrameBuilder.tcpHeadersLength + payload.count)
            let ends = fromClient ? e : e.reversed
            let s = fromClient ? seq.client : seq.server, a = fromClient ? seq.server : seq.client
            let n = buffer.withUnsafeMutableBytes { b in
                (try? FrameBuilder.tcp(into: b, endpoints: ends, payload: payload, flags: flags, sequence: s, acknowledgement: flags.contains(.ack) ? a : 0)) ?? 0
            }
            packets.append((t, Array(buffer.prefix(n))))
            let advance = UInt32(payload.count) + (flags.contains(.syn) || flags.contains(.fin) ? 1 : 0)
            if fromClient { seq.client &+= advance } else { seq.server &+= advance }
            t += UInt64(20_000 + rng.next(below: 200_000))
        }
        emit(true, [], [.syn])
        t += rtt / 2
        emit(false, [], [.syn, .ack])
        t += rtt / 2
        emit(true, [], [.ack])
        for (fromClient, data) in exchanges {
            var offset = 0
            while offset < data.count {
                let end = min(offset + 1460, data.count)
                emit(fromClient, data[offset..<end], end == data.count ? [.ack, .psh] : [.ack])
                offset = end
            }
            t += rtt / 2
            emit(!fromClient, [], [.ack])
        }
        emit(true, [], [.fin, .ack])
        emit(false, [], [.fin, .ack])
        emit(true, [], [.ack])
    }

    mutating func udpExchange(_ e: FrameBuilder.Endpoints, start: UInt64, _ messages: [(fromClient: Bool, data: [UInt8])]) {
        var t = start
        for (fromClient, data) in messages {
            var buffer = [UInt8](repeating: 0, count: FrameBuilder.udpHeadersLength + data.count)
            let n = buffer.withUnsafeMutableBytes { b in (try? FrameBuilder.udp(into: b, endpoints: fromClient ? e : e.reversed, payload: data)) ?? 0 }
            packets.append((t, Array(buffer.prefix(n))))
            t += UInt64(300_000 + rng.next(below: 40_000_000))
        }
    }

    // MARK: Protocols

    static let paths = ["/", "/index.html", "/images/logo.png", "/css/site.css", "/js/app.js", "/api/v1/items", "/search",
                        "/login", "/products/1234", "/news/2026/11/story.html", "/static/font.woff2", "/favicon.ico"]
    static let agents = ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
                         "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
                         "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148"]
    static let words = ["the", "quick", "network", "packet", "server", "update", "report", "customer", "order", "weather",
                        "football", "market", "photo", "travel", "recipe", "music", "video", "science", "health", "local"]

    mutating func text(words n: Int) -> String { (0..<n).map { _ in Self.words[rng.next(below: Self.words.count)] }.joined(separator: " ") }

    mutating func http(_ start: UInt64, trigger: Bool) {
        // Attacks come from outside; a malicious body comes back to an inside client;
        // the failing application server is one inside host.
        let attack = trigger ? rng.next(below: 9) : -1
        let inbound = attack == 7 ? false : attack >= 0 || rng.nextUnit() < 0.3
        let port: UInt16 = [80, 80, 80, 8080, 8000][rng.next(below: 5)]
        var e = endpoints(port: port, inbound: inbound)
        if attack == 6 { e.destination = IPv4Address(10, 1, 0, 80) }
        var method = "GET", path = Self.paths[rng.next(below: Self.paths.count)], agent = Self.agents[rng.next(below: Self.agents.count)]
        var cookie = "session=\(rng.next(below: 1 << 30))", body = "", status = "200 OK"
        var page = "<html><head><title>\(text(words: 4))</title></head><body><p>\(text(words: 80 + rng.next(below: 600)))</p></body></html>"
        switch attack {
        case 0: path = "/cgi-bin/view.cgi?file=../../../../etc/passwd"
        case 1: path = "/products.php?id=1%20UNION%20ALL%20SELECT%20user,password%20FROM%20users--"
        case 2: agent = "sqlmap/1.7.2#stable (https://sqlmap.org)"
        case 3: method = "POST"; path = "/upload.aspx"; body = "cmd=c%3A%5Cwindows%5Csystem32%5Ccmd.exe+%2Fc+whoami"
        case 4: path = "/" + String(repeating: "A", count: 400)
        case 5: cookie = "session=1; admin=1"
        case 6: status = "500 Internal Server Error"
        case 7: page = "<html><script>eval(unescape('%64%6f%63%75%6d%65%6e%74'))</script>" + page
        case 8: agent = "Mozilla/5.00 (Nikto/2.1.6) (Evasions:None) (Test:000001)"
        default: break
        }
        if !inbound && rng.nextUnit() < 0.1 { agent = "curl/8.4.0" }
        var request = "\(method) \(path) HTTP/1.1\r\nHost: www.\(Self.words[rng.next(below: Self.words.count)]).example\r\nUser-Agent: \(agent)\r\nAccept: */*\r\nCookie: \(cookie)\r\n"
        if !body.isEmpty { request += "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: \(body.utf8.count)\r\n" }
        request += "\r\n" + body
        let response = "HTTP/1.1 \(status)\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: \(page.utf8.count)\r\n\r\n" + page
        tcpFlow(e, start: start, [(true, Array(request.utf8)), (false, Array(response.utf8))])
    }

    mutating func tls(_ start: UInt64, trigger: Bool) {
        let e = endpoints(port: 443, inbound: rng.nextUnit() < 0.2)
        let name = trigger ? "update.evil-c2.example" : "www.\(Self.words[rng.next(below: Self.words.count)]).example"
        var ext: [UInt8] = [0x00, 0x00] + be16(name.utf8.count + 5) + be16(name.utf8.count + 3) + [0x00] + be16(name.utf8.count) + Array(name.utf8)
        ext += [0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]
        var hello: [UInt8] = [0x03, 0x03] + random(32) + [0x20] + random(32) + [0x00, 0x04, 0x13, 0x01, 0x13, 0x02, 0x01, 0x00]
        hello += be16(ext.count) + ext
        let clientHello = [0x16, 0x03, 0x01] + be16(hello.count + 4) + [0x01, 0x00] + be16(hello.count) + hello
        let serverHello: [UInt8] = [0x16, 0x03, 0x03] + be16(90) + [0x02, 0x00, 0x00, 0x56, 0x03, 0x03] + random(86)
        let appData: [UInt8] = [0x17, 0x03, 0x03] + be16(1200) + random(1200)
        tcpFlow(e, start: start, [(true, clientHello), (false, serverHello + [0x17, 0x03, 0x03] + be16(600) + random(600)),
                                  (true, Array(appData.prefix(300))), (false, appData + appData)])
    }

    mutating func dns(_ start: UInt64, trigger: Bool) {
        var e = endpoints(port: 53, inbound: false)
        e.destination = rng.nextUnit() < 0.5 ? IPv4Address(8, 8, 8, 8) : IPv4Address(8, 8, 4, 4)
        let labels = trigger ? ["duskgytldkxiuqc6", "onion"] : [Self.words[rng.next(below: Self.words.count)], "example", "com"]
        let id = be16(rng.next(below: 65536))
        var question: [UInt8] = []
        for l in labels { question += [UInt8(l.utf8.count)] + Array(l.utf8) }
        question += [0x00, 0x00, 0x01, 0x00, 0x01]
        let query = id + [0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00] + question
        let nx = trigger || rng.nextUnit() < 0.05
        let answer: [UInt8] = nx ? [] : [0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x0e, 0x10, 0x00, 0x04] + random(4)
        let response = id + (nx ? [0x81, 0x83] : [0x81, 0x80]) + [0x00, 0x01, 0x00, nx ? 0 : 1, 0x00, 0x00, 0x00, 0x00] + question + answer
        udpExchange(e, start: start, [(true, query), (false, response)])
    }

    mutating func smtp(_ start: UInt64, trigger: Bool) {
        let inbound = rng.nextUnit() < 0.5 || trigger
        let e = endpoints(port: 25, inbound: inbound)
        var lines: [(Bool, String)] = [(false, "220 mail.example ESMTP Postfix\r\n"), (true, "EHLO client.example\r\n"),
                                       (false, "250-mail.example\r\n250-SIZE 10240000\r\n250 8BITMIME\r\n")]
        if trigger && rng.nextUnit() < 0.5 {
            lines += [(true, "EXPN root\r\n"), (false, "502 5.5.2 Error: command not recognized\r\n")]
        } else {
            let attachment = trigger ? "invoice_2026.exe" : "report.pdf"
            let message = "From: a@example.org\r\nTo: b@example.net\r\nSubject: \(text(words: 5))\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n\(text(words: 120))\r\n--b1\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=\"\(attachment)\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\(Data(random(900)).base64EncodedString(options: .lineLength76Characters))\r\n--b1--\r\n.\r\n"
            lines += [(true, "MAIL FROM:<a@example.org>\r\n"), (false, "250 2.1.0 Ok\r\n"), (true, "RCPT TO:<b@example.net>\r\n"),
                      (false, "250 2.1.5 Ok\r\n"), (true, "DATA\r\n"), (false, "354 End data with <CR><LF>.<CR><LF>\r\n"),
                      (true, message), (false, "250 2.0.0 Ok: queued\r\n")]
        }
        lines += [(true, "QUIT\r\n"), (false, "221 2.0.0 Bye\r\n")]
        tcpFlow(e, start: start, lines.map { ($0.0, Array($0.1.utf8)) })
    }

    mutating func ssh(_ start: UInt64, trigger: Bool) {
        let e = endpoints(port: 22, inbound: rng.nextUnit() < 0.6)
        let client = trigger && rng.nextUnit() < 0.5 ? "SSH-1.5-OpenSSH_2.9p2\r\n" : "SSH-2.0-OpenSSH_9.6\r\n"
        let server = trigger ? "SSH-2.0-libssh_0.8.1\r\n" : "SSH-2.0-OpenSSH_8.9p1 Ubuntu-3ubuntu0.6\r\n"
        tcpFlow(e, start: start, [(false, Array(server.utf8)), (true, Array(client.utf8)), (true, random(1400)), (false, random(1100)),
                                  (true, random(48)), (false, random(500)), (true, random(96))])
    }

    mutating func ftp(_ start: UInt64, trigger: Bool) {
        let e = endpoints(port: 21, inbound: true)
        let user = trigger ? "anonymous" : "backup"
        let pass = trigger ? "guest" : "s3cret@example.org"
        tcpFlow(e, start: start, [(false, "220 FTP server ready\r\n"), (true, "USER \(user)\r\n"), (false, "331 Password required\r\n"),
                                  (true, "PASS \(pass)\r\n"), (false, "230 Logged in\r\n"), (true, "PASV\r\n"),
                                  (false, "227 Entering Passive Mode (10,1,2,3,195,80)\r\n"), (true, "QUIT\r\n"), (false, "221 Goodbye\r\n")]
                  .map { ($0.0, Array($0.1.utf8)) })
    }

    mutating func mysql(_ start: UInt64, trigger: Bool) {
        let e = endpoints(port: 3306, inbound: true)
        let greeting: [UInt8] = [0x4a, 0x00, 0x00, 0x00, 0x0a] + Array("8.0.35\0".utf8) + random(62)
        let user = trigger ? "root" : "app"
        var login: [UInt8] = [0x00, 0x00, 0x00, 0x01, 0x8d, 0xa6, 0x0f, 0x00, 0x00, 0x00, 0x00, 0x01, 0x21] + [UInt8](repeating: 0, count: 23)
        login += Array(user.utf8) + [0x00, 0x14] + random(20)
        login[0] = UInt8(login.count - 4)
        tcpFlow(e, start: start, [(false, greeting), (true, login), (false, [0x07, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00]),
                                  (true, [0x21, 0x00, 0x00, 0x00, 0x03] + Array("SELECT * FROM orders LIMIT 10".utf8)), (false, random(700))])
    }

    mutating func irc(_ start: UInt64) {
        let e = endpoints(port: 6667, inbound: false)
        tcpFlow(e, start: start, [(true, Array("NICK flexbot\r\nUSER flexbot 0 * :Flex\r\n".utf8)),
                                  (false, Array(":irc.example 001 flexbot :Welcome\r\n".utf8)), (true, Array("JOIN #flex\r\n".utf8))])
    }

    mutating func ntp(_ start: UInt64, trigger: Bool) {
        var e = endpoints(port: 123, inbound: false)
        if trigger { e = endpoints(port: UInt16(1 + rng.next(below: 1000)), inbound: true) }
        let request: [UInt8] = trigger ? [0x0d] : [0x23] + [UInt8](repeating: 0, count: 39) + random(8)
        udpExchange(e, start: start, trigger ? [(true, request)] : [(true, request), (false, [0x24, 0x02] + random(46))])
    }

    /// Scans and oddities: SYNs to telnet, a NOP sled, a marker in a UDP datagram.
    mutating func probe(_ start: UInt64, trigger: Bool) {
        let trigger = trigger || rng.nextUnit() < 0.3
        switch rng.next(below: 3) {
        case 0:
            let e = endpoints(port: 23, inbound: true)
            var buffer = [UInt8](repeating: 0, count: FrameBuilder.tcpHeadersLength)
            _ = buffer.withUnsafeMutableBytes { try? FrameBuilder.tcp(into: $0, endpoints: e, payload: [UInt8](), flags: [.syn], sequence: 1) }
            packets.append((start, buffer))
        case 1:
            let e = endpoints(port: [80, 8080, 445][rng.next(below: 3)], inbound: true)
            let sled = [UInt8](repeating: 0x90, count: trigger ? 64 : 0) + random(200)
            tcpFlow(e, start: start, [(true, sled)])
        default:
            let e = endpoints(port: UInt16(20000 + rng.next(below: 1000)), inbound: true)
            udpExchange(e, start: start, [(true, Array((trigger ? "FLEX-IP-MARKER " : "hello ").utf8) + random(30))])
        }
    }

    // MARK: Bytes

    func be16(_ n: Int) -> [UInt8] { [UInt8(n >> 8 & 0xff), UInt8(n & 0xff)] }
    mutating func random(_ n: Int) -> [UInt8] { (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
}
