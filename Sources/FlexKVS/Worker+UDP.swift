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
        guard let udp = server.udp else { return }
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
        let s = udpSession
        s.reset()
        if d.kind == .logRecord, storePlaced(d, into: s) {
            record(commands: 1, since: t0, steeringCycles)
        } else {
            if d.hash != 0 { s.hashHint = d.hash }
            s.receive(frame.request)
            ProtocolHandler.run(s, context)
            record(commands: s.commands, since: t0, steeringCycles)
        }
        sendUDP(s.output, requestID: frame.requestID,
                to: d.packet.replyEndpoints, reusing: &request, port: udp)
    }

    /// Sends `output` as the reply datagrams to `reply`, the first one in `request`'s
    /// buffer (which is then used up).
    func sendUDP(_ output: [UInt8], requestID: UInt16, to reply: FrameBuilder.Endpoints, reusing request: inout Packet?,
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
            let body = p.data + FrameBuilder.udpHeadersLength
            MemcachedUDPFrame.writeHeader(at: body, requestID: requestID, sequence: i, count: datagrams)
            output.withUnsafeBytes { (body + MemcachedUDPFrame.headerLength).copyMemory(from: $0.baseAddress! + start, byteCount: n) }
            let length = (try? FrameBuilder.writeUDPHeaders(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                            endpoints: reply, payloadLength: MemcachedUDPFrame.headerLength + n,
                                                            checksum: false)) ?? 0
            p.length = UInt32(length)
            udpOut[udpOut.count - 1] = p
        }
    }
}
