#if canImport(Glibc)
import Glibc
#endif
import CFlexSys
import FlexWire

/// Kernel UDP sockets presented as an Ethernet port, so the same steering program runs
/// over them: each received datagram gets synthesized Ethernet/IPv4/UDP headers (zero
/// MACs, the peer as source, the bound address as destination) in front of its payload;
/// a transmitted frame's IPv4 destination and UDP port say where its payload goes.
///
/// Queue i is its own `SO_REUSEPORT` socket, so the kernel spreads flows over queues
/// (the software counterpart of RSS). Datagrams move in `recvmmsg`/`sendmmsg` batches;
/// consecutive datagrams of a batch to one peer go as one message the kernel cuts up
/// (`UDP_SEGMENT`), so it routes and builds them once.
public final class KernelUDPPort: PacketPort, @unchecked Sendable {
    public let name: String
    public var rxQueueCount: Int { sockets.count }
    public var txQueueCount: Int { sockets.count }
    /// The kernel spreads flows over the sockets by its own hash.
    public let address: IPv4Address
    public let port: UInt16
    let sockets: [Int32]
    let pool: BufferPool
    let counters = PortCounters()
    /// Per-queue datagram arrays for the shim, rx and tx apart (they may run on
    /// different threads).
    let rxDatagrams: [UnsafeMutablePointer<cflex_datagram>]
    let txDatagrams: [UnsafeMutablePointer<cflex_datagram>]
    /// Per queue, how many datagrams the next receive asks for: twice what the last
    /// one got, at least `minimumReceive`, at most `burst`. At a low rate a round finds
    /// one datagram, and taking 64 buffers from the pool, posting 64 message headers
    /// and returning 63 buffers cost more than serving it; datagrams beyond the ask
    /// stay in the socket for the next round (its descriptor stays readable).
    let receiveAsks: UnsafeMutablePointer<Int>
    /// Per queue, whether transmit still asks the kernel to segment runs of datagrams
    /// (1), or sends each alone (0): the kernel lacks it, or the route refused it once.
    let segmenting: UnsafeMutablePointer<Int32>
    static let burst = 64
    static let minimumReceive = 4

    /// Binds `queues` sockets to `address:port` (port 0 picks one for all queues).
    /// `receiveBufferBytes` sizes each socket's kernel receive buffer (nil: the
    /// system's default); a datagram that finds it full is dropped by the kernel, which
    /// counts it in UdpRcvbufErrors.
    public init(address: IPv4Address = .loopback, port: UInt16, queues: Int = 1,
                bufferCount: Int = 4096, bufferSize: Int = 2048, receiveBufferBytes: Int? = nil) throws {
        precondition(queues > 0)
        var fds: [Int32] = []
        var chosen = port
        do {
            for _ in 0..<queues {
                let fd = try Socket.bound(type: Int32(SOCK_DGRAM.rawValue), ip: address, port: chosen, claiming: fds.isEmpty)
                fds.append(fd)
                if let receiveBufferBytes { Socket.setReceiveBuffer(fd, bytes: receiveBufferBytes) }
                chosen = Socket.localEndpoint(fd).1
            }
        } catch {
            fds.forEach { close($0) }
            throw error
        }
        sockets = fds
        self.address = address
        self.port = chosen
        name = "udp:\(address):\(chosen)"
        pool = BufferPool(bufferCount: bufferCount, bufferSize: bufferSize)
        rxDatagrams = (0..<queues).map { _ in .allocate(capacity: Self.burst) }
        txDatagrams = (0..<queues).map { _ in .allocate(capacity: Self.burst) }
        receiveAsks = .allocate(capacity: queues)
        receiveAsks.initialize(repeating: Self.burst, count: queues)
        segmenting = .allocate(capacity: queues)
        for q in 0..<queues { (segmenting + q).initialize(to: cflex_udp_segmentation_supported(fds[q])) }
    }

    deinit {
        sockets.forEach { close($0) }
        rxDatagrams.forEach { $0.deallocate() }
        txDatagrams.forEach { $0.deallocate() }
        receiveAsks.deallocate()
        segmenting.deallocate()
    }

    public func receive(queue: Int, into batch: PacketBatch) -> Int {
        let want = min(batch.freeSpace, receiveAsks[queue])
        let start = batch.count
        let headers = FrameBuilder.udpHeadersLength
        let got = pool.allocate(count: want, into: batch)
        guard got > 0 else { return 0 }  // no buffer: datagrams wait in the kernel
        let d = rxDatagrams[queue]
        for i in 0..<got {
            let p = batch[start + i]
            d[i].data = p.data + headers
            d[i].capacity = p.capacity - UInt32(headers)
        }
        let n = Int(max(0, cflex_recv_batch(sockets[queue], d, UInt32(got))))
        var kept = 0
        var bytes = 0
        var truncated = 0
        for i in 0..<n {
            let length = Int(d[i].length)
            guard length <= Int(d[i].capacity) else { truncated += 1; continue }
            let (peerIP, peerPort) = Socket.endpoint(d[i].peer)
            var p = batch[start + i]
            let frame = UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity))
            let endpoints = FrameBuilder.Endpoints(source: peerIP, destination: address,
                                                   sourcePort: peerPort, destinationPort: port)
            _ = try? FrameBuilder.writeUDPHeaders(into: frame, endpoints: endpoints, payloadLength: length, checksum: false)
            p.length = UInt32(headers + length)
            p.flags.insert(.headerChecksumGood)
            // Kept datagrams move to the front; a dropped one's buffer takes the slot
            // behind them and is returned below with the unused ones.
            batch[start + i] = batch[start + kept]
            batch[start + kept] = p
            kept += 1
            bytes += length
        }
        // Return the buffers of truncated datagrams and of slots nothing arrived in.
        let unused = batch.count - (start + kept)
        pool.release(batch.packets + start + kept, count: unused)
        batch.count = start + kept
        receiveAsks[queue] = min(Self.burst, max(Self.minimumReceive, 2 * n))
        counters.countReceived(packets: kept, bytes: bytes)
        counters.countReceiveDrops(truncated)
        return kept
    }

    public func transmit(queue: Int, _ batch: PacketBatch) -> Int {
        let d = txDatagrams[queue]
        let n = min(batch.count, Self.burst)
        var valid = 0
        var bytes = 0
        var invalid = 0
        // Compact the valid frames to the front; free what cannot be sent.
        for i in 0..<n {
            let p = batch[i]
            guard let datagram = Self.builtDatagram(p) ?? Self.parsedDatagram(p) else {
                invalid += 1
                pool.release(batch.packets + i, count: 1)
                continue
            }
            d[valid].data = p.data + datagram.payloadOffset
            d[valid].length = UInt32(datagram.payloadLength)
            d[valid].peer = Socket.address(datagram.destination, datagram.port)
            bytes += datagram.payloadLength
            batch[valid] = p
            valid += 1
        }
        if n > valid {
            let rest = batch.count - n
            if rest > 0 { (batch.packets + valid).update(from: batch.packets + n, count: rest) }
            batch.count = valid + rest
        }
        counters.countTransmitErrors(invalid)
        let rc = cflex_send_batch_segmented(sockets[queue], d, UInt32(valid), segmenting + queue)
        let sent: Int
        if rc < 0 {
            // A hard error (e.g. unreachable destination) fails the first datagram:
            // count it and drop it so one bad peer cannot stall the queue.
            counters.countTransmitErrors(1)
            sent = min(1, valid)
        } else {
            sent = Int(rc)
        }
        if sent < valid { bytes = 0; for i in 0..<sent { bytes += Int(d[i].length) } }
        counters.countTransmitted(packets: rc < 0 ? 0 : sent, bytes: rc < 0 ? 0 : bytes)
        pool.release(batch.packets, count: sent)
        batch.removeFirst(sent)
        return invalid + sent
    }

    typealias Datagram = (payloadOffset: Int, payloadLength: Int, destination: IPv4Address, port: UInt16)

    /// A frame laid out as this process builds them (Ethernet II, IPv4 without options
    /// and unfragmented, UDP; lengths agreeing with the frame's), read at fixed offsets;
    /// nil for any other layout, which `parsedDatagram` then reads. Both give the same
    /// answer for such a frame (parsing it cost about 170 instructions a reply).
    @inline(__always) static func builtDatagram(_ p: Packet) -> Datagram? {
        let frame = p.bytes, l4 = EthernetHeader.length + IPv4Header.minimumLength
        guard frame.count >= FrameBuilder.udpHeadersLength,
              let ip = FrameBuilder.builtIPv4(frame, protocolNumber: IPv4Header.Proto.udp.rawValue) else { return nil }
        let udp = UDPHeader(unchecked: p.data + l4)
        guard udp.length == ip.totalLength - IPv4Header.minimumLength else { return nil }
        return (FrameBuilder.udpHeadersLength, udp.length - UDPHeader.length, ip.destination, udp.destinationPort)
    }

    static func parsedDatagram(_ p: Packet) -> Datagram? {
        guard let parsed = try? ParsedFrame(parsing: p.bytes, verifyingChecksum: false, ipv6: false),
              parsed.layers.contains(.udp) else { return nil }
        return (Int(parsed.payloadOffset), Int(parsed.payloadLength), IPv4Address(parsed.destinationAddress), parsed.destinationPort)
    }

    public func readinessDescriptor(queue: Int) -> Int32? { sockets[queue] }

    public func wait(queue: Int, timeoutMilliseconds: Int) {
        Socket.waitReadable(sockets[queue], timeoutMilliseconds: timeoutMilliseconds)
    }

    public func allocate(count: Int, into batch: PacketBatch) -> Int { pool.allocate(count: count, into: batch) }
    public func release(_ batch: PacketBatch) { pool.release(batch) }
    public var statistics: PortStatistics { counters.snapshot }
}
