import ArgumentParser
import FlexIO
import FlexWire
import Foundation

/// Sends numbered UDP datagrams through a kernel socket and counts the echoes: the
/// client side of reflector and server round-trip tests.
struct UDPPing: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "udp-ping",
        abstract: "Send numbered UDP datagrams and count the replies; exit 1 unless all came back.")

    @Option(help: "Destination IPv4:port.") var target: String
    @Option(help: "Datagrams to send.") var count = 100
    @Option(help: "Payload bytes (at least 8).") var size = 64
    @Option(help: "How long to wait for the last reply, in milliseconds.") var timeoutMs = 2000

    func run() throws {
        let parts = target.split(separator: ":")
        guard parts.count == 2, let ip = IPv4Address(String(parts[0])), let port = UInt16(parts[1]) else {
            throw ValidationError("--target must be IPv4:port, not \(target)")
        }
        guard size >= 8, size <= 1400, count > 0 else { throw ValidationError("--size 8...1400 and --count > 0") }
        let client = try KernelUDPPort(address: .any, port: 0)
        let batch = PacketBatch(capacity: 32)
        var seen = Set<UInt64>()
        var sent = 0
        let start = Date()
        var lastSend = Date()
        while seen.count < count && Date().timeIntervalSince(lastSend) * 1000 < Double(timeoutMs) {
            if sent < count, client.allocate(count: 1, into: batch) == 1 {
                var p = batch[0]
                var payload = [UInt8](repeating: 0x5A, count: size)
                withUnsafeBytes(of: UInt64(sent).bigEndian) { for i in 0..<8 { payload[i] = $0[i] } }
                let e = FrameBuilder.Endpoints(source: .any, destination: ip, sourcePort: client.port, destinationPort: port)
                p.length = UInt32(try FrameBuilder.udp(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                       endpoints: e, payload: payload))
                batch[0] = p
                if client.transmit(queue: 0, batch) == 1 { sent += 1; lastSend = Date() } else { client.release(batch) }
            }
            client.wait(queue: 0, timeoutMilliseconds: sent < count ? 0 : 10)
            _ = client.receive(queue: 0, into: batch)
            for i in 0..<batch.count {
                if let f = try? ParsedFrame(parsing: batch[i].bytes), f.payloadLength >= 8 {
                    seen.insert(UInt64(bigEndian: UnsafeRawPointer(batch[i].data + Int(f.payloadOffset)).loadUnaligned(as: UInt64.self)))
                }
            }
            client.release(batch)
        }
        let ms = Date().timeIntervalSince(start) * 1000
        print("udp-ping: sent \(sent) received \(seen.count) in \(String(format: "%.1f", ms)) ms")
        if seen.count < count { throw ExitCode(1) }
    }
}
