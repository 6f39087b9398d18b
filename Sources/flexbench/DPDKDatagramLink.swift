import FlexIO
import FlexWire
import Foundation

/// The load generator's kernel-bypass side: UDP datagrams to and from one server over
/// a DPDK ethdev (net_memif to a flexkvs in another process, net_af_packet on a veth).
/// Client socket `i` is source port `basePort + i` of `address`. The server's MAC is
/// learnt by ARP when the link is opened, so the server's ARP answering is exercised.
///
/// One thread uses it (queue 0); frames go out in bursts, one allocation of mbufs per
/// burst.
final class DPDKDatagramLink {
    let port: DPDKPort
    let address: IPv4Address
    let server: (IPv4Address, UInt16)
    let basePort: UInt16 = 40000
    private(set) var serverMAC = MACAddress.zero
    private let out = PacketBatch(capacity: 64)
    private let rx = PacketBatch(capacity: 64)
    /// Datagrams that found no mbuf or no room on the ring (they show up as timeouts).
    private(set) var sendDrops: UInt64 = 0

    init(port: DPDKPort, address: IPv4Address, server: (IPv4Address, UInt16)) throws {
        self.port = port
        self.address = address
        self.server = server
        guard port.waitForLink(timeoutMilliseconds: 15_000) else {
            throw LoadError("\(port.name): the link did not come up in 15 s (is the server running on the other end?)")
        }
        serverMAC = try resolve()
    }

    deinit { port.stop() }

    /// Asks for the server's MAC every 100 ms for 5 s.
    private func resolve() throws -> MACAddress {
        let deadline = Date().addingTimeInterval(5)
        while Date() < deadline {
            if port.allocate(count: 1, into: out) == 1 {
                var p = out[0]
                p.length = UInt32(ARP.writeRequest(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                   from: port.macAddress, address: address, asking: server.0))
                out[0] = p
                _ = port.transmit(queue: 0, out)
                if !out.isEmpty { port.release(out) }
            }
            let waitUntil = Date().addingTimeInterval(0.1)
            while Date() < waitUntil {
                _ = port.receive(queue: 0, into: rx)
                var found: MACAddress?
                for i in 0..<rx.count where found == nil { found = ARP.replier(UnsafeRawBufferPointer(rx[i].bytes), for: server.0) }
                port.release(rx)
                if let found { return found }
                usleep(1000)
            }
        }
        throw LoadError("\(port.name): no ARP reply from \(server.0) in 5 s")
    }

    /// Client socket `socket`'s frames to the server.
    func endpoints(socket: Int) -> FrameBuilder.Endpoints {
        FrameBuilder.Endpoints(sourceMAC: port.macAddress, destinationMAC: serverMAC, source: address,
                               destination: server.0, sourcePort: basePort + UInt16(socket), destinationPort: server.1)
    }

    /// Sends `lengths.count` datagrams laid back to back in `payloads` from client socket
    /// `socket`.
    func send(socket: Int, payloads: UnsafeRawBufferPointer, lengths: [Int]) {
        let endpoints = self.endpoints(socket: socket)
        var offset = 0
        var next = 0
        while next < lengths.count {
            let n = min(out.capacity, lengths.count - next)
            guard port.allocate(count: n, into: out) == n else {
                sendDrops += UInt64(lengths.count - next)
                return
            }
            for i in 0..<n {
                var p = out[i]
                let len = lengths[next + i]
                let frame = UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity))
                p.length = UInt32((try? FrameBuilder.udp(into: frame, endpoints: endpoints,
                                                         payload: UnsafeRawBufferPointer(rebasing: payloads[offset..<(offset + len)]))) ?? 0)
                out[i] = p
                offset += len
            }
            next += n
            _ = port.transmit(queue: 0, out)
            if !out.isEmpty {
                sendDrops += UInt64(out.count)
                port.release(out)
            }
        }
    }

    /// Hands each UDP payload the server sent to a client socket to `handle(socket,
    /// payload)`; frames for anyone else are dropped. Returns the frames received.
    @discardableResult
    func receive(_ handle: (Int, UnsafeRawBufferPointer) -> Void) -> Int {
        let n = port.receive(queue: 0, into: rx)
        for i in 0..<n {
            let bytes = rx[i].bytes
            guard let f = try? ParsedFrame(parsing: bytes), f.layers.contains(.udp), f.sourcePort == server.1,
                  f.destinationAddress == address.value, f.destinationPort >= basePort else { continue }
            let start = Int(f.payloadOffset)
            handle(Int(f.destinationPort - basePort),
                   UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(bytes)[start..<(start + Int(f.payloadLength))]))
        }
        if n > 0 { port.release(rx) }
        return n
    }
}
