import ArgumentParser
import FlexIO
import FlexNIC
import FlexWire
import Foundation

/// flexkvs: the memcached-compatible key-value server. This first cut serves the
/// foundation's smoke test: it binds like memcached, steers requests through the
/// FlexNIC pipeline over kernel sockets and answers `version` and `quit`; every other
/// command gets memcached's `ERROR` until the store lands (issue 3).
@main
struct FlexKVS: ParsableCommand {
    static let version = "0.1.0"
    static let configuration = CommandConfiguration(
        commandName: "flexkvs",
        abstract: "A memcached-compatible key-value server on the FlexNIC steering layer.",
        discussion: "Flags follow memcached's (-p -U -l -t -m -c -I -v).",
        version: version)

    @Option(name: .customShort("p"), help: "TCP port to listen on.") var port: UInt16 = 11211
    @Option(name: .customShort("U"), help: "UDP port (0: off).") var udpPort: UInt16 = 0
    @Option(name: .customShort("l"), help: "Address to listen on.") var listen = "127.0.0.1"
    @Option(name: .customShort("t"), help: "Worker threads (cores).") var threads = 1
    @Option(name: .customShort("m"), help: "Item memory in megabytes.") var memory = 64
    @Option(name: .customShort("c"), help: "Max simultaneous connections.") var connections = 1024
    @Flag(name: .customShort("v"), help: "Verbose: log connections and errors.") var verbose = false

    func validate() throws {
        guard IPv4Address(listen) != nil else { throw ValidationError("-l \(listen): not an IPv4 address") }
        guard threads >= 1, threads <= 64 else { throw ValidationError("-t must be 1...64") }
        guard connections >= 1 else { throw ValidationError("-c must be at least 1") }
    }

    func run() throws {
        let address = IPv4Address(listen)!
        let tcp: KernelTCPPort
        do {
            tcp = try KernelTCPPort(address: address, port: port, queues: 1, maxConnections: connections)
        } catch {
            throw ValidationError("cannot listen on \(listen):\(port): \(error)")
        }
        // Every TCP segment to our port goes to core queue 0; anything else is slow path.
        let program = SteeringProgram(name: "flexkvs-tcp", queues: 1, stages: [
            .init("memcached-tcp", fields: [FieldMatch(.ipProtocol, .exact(6)), FieldMatch(.destinationPort, .exact(UInt64(tcp.port)))],
                  actions: [.strip(.l4), .toQueue(0)]),
        ])
        let pipeline = try SteeringPipeline(program: program)
        let emulator = SteeringEmulator(port: tcp, pipeline: pipeline)
        print("flexkvs \(Self.version) listening on \(tcp.name) (TCP ASCII: version, quit)")
        fflush(stdout)
        let server = SmokeServer(port: tcp, verbose: verbose)
        let inbox = UnsafeMutablePointer<Descriptor>.allocate(capacity: 64)
        while true {
            if emulator.poll() == 0 { tcp.wait(queue: 0, timeoutMilliseconds: 100) }
            for ring in pipeline.rings {
                let n = ring.dequeue(into: inbox, maximum: 64)
                for i in 0..<n { server.handle(inbox[i]) }
            }
            server.flush()
        }
    }
}

/// Answers `version` and `quit`, line by line, per connection; everything else is an
/// `ERROR`. Lines longer than 2,048 bytes close the connection, as memcached does for
/// garbage.
final class SmokeServer {
    let port: KernelTCPPort
    let verbose: Bool
    var partial: [UInt32: [UInt8]] = [:]
    let out = PacketBatch(capacity: 64)

    init(port: KernelTCPPort, verbose: Bool) {
        self.port = port
        self.verbose = verbose
    }

    func handle(_ d: Descriptor) {
        defer { port.release(d.packet) }
        guard d.kind == .packet, let frame = try? ParsedFrame(parsing: d.packet.bytes) else { return }
        let flow = d.packet.flow
        if frame.tcpFlags & TCPHeader.Flags.fin.rawValue != 0 {
            partial[flow] = nil
            return
        }
        var buffer = partial[flow] ?? []
        buffer += UnsafeRawBufferPointer(d.payload)
        var replies: [UInt8] = []
        var close = false
        while let nl = buffer.firstIndex(of: 0x0A) {
            var line = buffer[..<nl]
            if line.last == 0x0D { line = line.dropLast() }
            let command = String(decoding: line, as: UTF8.self).split(separator: " ").first ?? ""
            switch command {
            case "version": replies += Array("VERSION \(FlexKVS.version)\r\n".utf8)
            case "quit": close = true
            default: replies += Array("ERROR\r\n".utf8)
            }
            buffer.removeSubrange(...nl)
            if close { break }
        }
        if buffer.count > 2048 {
            replies += Array("CLIENT_ERROR line too long\r\n".utf8)
            close = true
        }
        partial[flow] = close ? nil : buffer
        send(replies, to: d, frame: frame, close: close)
    }

    func send(_ payload: [UInt8], to d: Descriptor, frame: ParsedFrame, close: Bool) {
        guard !payload.isEmpty || close else { return }
        if out.isFull { flush() }
        guard port.allocate(count: 1, into: out) == 1 else { return }
        var p = out[out.count - 1]
        let e = FrameBuilder.Endpoints(source: IPv4Address(frame.destinationAddress), destination: IPv4Address(frame.sourceAddress),
                                       sourcePort: frame.destinationPort, destinationPort: frame.sourcePort)
        let length = (try? FrameBuilder.tcp(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                            endpoints: e, payload: payload, flags: close ? [.fin, .ack] : [.psh, .ack])) ?? 0
        p.length = UInt32(length)
        p.flow = d.packet.flow
        out[out.count - 1] = p
    }

    func flush() {
        while !out.isEmpty { _ = port.transmit(queue: 0, out) }
    }
}
