import CFlexSys
import FlexIO
import FlexNIC
import FlexWire

/// A worker's UDP phase: each datagram the pipeline steered here is one request in a
/// memcached UDP frame; the reply goes back in the request's buffer (and more
/// datagrams when it is long).
extension Worker {
    /// A UDP request is one datagram: the 8-byte frame header (request id, sequence,
    /// datagram count 1) and a text or binary request. As memcached, the sequence number
    /// is not looked at; a request that claims more than one datagram is counted and
    /// dropped.
    func handleUDP(_ d: Descriptor, _ steeringCycles: UInt64) {
        let t0 = cflex_rdtsc()
        guard let udp else { return }
        if d.kind == .segmentFull {
            placementFilled(d)
            return
        }
        // The request's buffer carries the first reply datagram (no allocation, no
        // release); if it is not used for that, it is released with the burst.
        var request: Packet? = d.packet
        defer { if let r = request { finished(r, udpDone, udp) } }
        // The pipeline parsed and verified this frame and stripped it to the UDP payload.
        guard let frame = MemcachedUDPFrame(UnsafeRawBufferPointer(d.payload)), frame.isWhole else {
            badFrames.wrappingAdd(1, ordering: .relaxed)
            return
        }
        // A request's cycles count until its reply is queued (the thesis' measure).
        if d.kind == .logRecord, let stored = storePlaced(d) {
            // A placed SET's reply is the bare 24-byte header (SETQ: none), written here
            // without a session.
            guard stored.opcode == BinaryProtocol.Op.set.rawValue else { return record(commands: 1, since: t0, steeringCycles) }
            var reply: (UInt64, UInt64, UInt64) = (0, 0, 0)
            withUnsafeMutableBytes(of: &reply) { r in
                BinaryProtocol.writeResponseHeader(at: r.baseAddress!, opcode: stored.opcode, keyLength: 0, extrasLength: 0,
                                                   status: .ok, bodyLength: 0, opaque: stored.opaque, cas: stored.cas)
                sendUDP(UnsafeRawBufferPointer(r), requestID: frame.requestID, to: d.packet.replyEndpoints, reusing: &request, port: udp)
            }
            return record(commands: 1, since: t0, steeringCycles)
        }
        if d.kind == .packet, d.detail == parsedGetStage, serveParsedGet(d, frame, reusing: &request, port: udp) {
            return record(commands: 1, since: t0, steeringCycles)
        }
        let s = udpSession
        s.reset()
        if d.hash != 0 { s.hashHint = d.hash }
        s.receive(frame.request)
        ProtocolHandler.run(s, context)
        s.output.withUnsafeBytes {
            sendUDP($0, requestID: frame.requestID, to: d.packet.replyEndpoints, reusing: &request, port: udp)
        }
        record(commands: s.commands, since: t0, steeringCycles)
    }

    /// Sends `output` as the reply datagrams to `reply`, the first one in `request`'s
    /// buffer (which is then used up).
    func sendUDP(_ output: UnsafeRawBufferPointer, requestID: UInt16, to reply: FrameBuilder.Endpoints, reusing request: inout Packet?,
                 port udp: any PacketPort) {
        let total = output.count
        let datagrams = MemcachedUDPFrame.datagrams(forReply: total)
        guard total > 0, datagrams <= Int(UInt16.max) else { return }
        for i in 0..<datagrams {
            if udpOut.isFull { flush(full: udpOut, port: udp) }
            if let r = request {
                udpOut.append(r)
                request = nil
            } else {
                guard udp.allocate(count: 1, into: udpOut) == 1 else { return }
            }
            var p = udpOut[udpOut.count - 1]
            let start = i * MemcachedUDPFrame.replyBytesPerDatagram
            let n = min(MemcachedUDPFrame.replyBytesPerDatagram, total - start)
            (p.data + FrameBuilder.udpHeadersLength + MemcachedUDPFrame.headerLength)
                .copyMemory(from: output.baseAddress! + start, byteCount: n)
            frameReply(&p, bodyLength: n, requestID: requestID, sequence: i, count: datagrams, to: reply)
            udpOut[udpOut.count - 1] = p
        }
    }

    /// Writes the headers of reply datagram `sequence` of `count` (Ethernet, IPv4, UDP
    /// and memcached's frame header) around the `bodyLength` reply bytes already in `p`
    /// after them, and sets its length.
    @inline(__always)
    func frameReply(_ p: inout Packet, bodyLength: Int, requestID: UInt16, sequence: Int, count: Int, to reply: FrameBuilder.Endpoints) {
        MemcachedUDPFrame.writeHeader(at: p.data + FrameBuilder.udpHeadersLength, requestID: requestID, sequence: sequence, count: count)
        let length = (try? FrameBuilder.writeUDPHeaders(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                        endpoints: reply, payloadLength: MemcachedUDPFrame.headerLength + bodyLength,
                                                        checksum: false)) ?? 0
        p.length = UInt32(length)
    }
}
