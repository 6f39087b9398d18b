import FlexIO
import FlexNIC
import FlexWire

/// GETs the pipeline parsed (`--steering dma`): the thesis' GET fast path hands the core
/// a request the NIC has already matched and hashed, and the core only looks the key up
/// and queues the reply. Here the pipeline's `KVSPrograms.parsedGetStage` matched a
/// binary GET alone in its datagram and hashed its key; the worker answers it in the
/// request's buffer, with no session and no protocol handler, byte for byte as the
/// handler would.
extension Worker {
    /// Serves a binary GET `parsedGetStage` matched: looks its key up and writes the
    /// reply into `request` (the flags and value copied straight from the item, under
    /// the partition's lock, as the handler copies them), then queues it. Returns false,
    /// having done nothing, for a request of another shape (a body that is not exactly
    /// the key, a longer datagram, a key memcached refuses) or while requests are logged:
    /// the caller then runs it through the protocol handler. (`-B ascii`, under which a
    /// binary GET is text, is refused with dma steering.)
    func serveParsedGet(_ d: Descriptor, _ frame: MemcachedUDPFrame, reusing request: inout Packet?,
                        port udp: any PacketPort) -> Bool {
        let r = frame.request, header = BinaryProtocol.headerSize
        guard r.count > header, var p = request, !context.logs(3) else { return false }
        let keyLength = Int(BinaryProtocol.be16(r, 2))
        let room = min(MemcachedUDPFrame.replyBytesPerDatagram,
                       Int(p.capacity) - FrameBuilder.udpHeadersLength - MemcachedUDPFrame.headerLength)
        guard keyLength <= TextProtocol.maxKeyLength, r.count == header + keyLength,
              Int(BinaryProtocol.be32(r, 8)) == keyLength, room >= header + BinaryProtocol.notFound.utf8CodeUnitCount else { return false }
        // Everything the reply needs from the request is read before the reply is
        // written over it.
        let opaque = BinaryProtocol.be32(r, 12), requestID = frame.requestID, reply = d.packet.replyEndpoints
        let key = UnsafeRawBufferPointer(rebasing: r[header...])
        let hash = d.hash != 0 ? d.hash : KVStore.hash(key)
        let get = BinaryProtocol.Op.get.rawValue
        let body = p.data + FrameBuilder.udpHeadersLength + MemcachedUDPFrame.headerLength
        // The reply's length in the request's buffer, or nil when it is too long for
        // one datagram and the session holds it.
        let written: Int? = context.store.withPartition(hash) { partition in
            guard let item = partition.get(key, hash: hash) else {
                BinaryProtocol.notFound.withUTF8Buffer { text in
                    BinaryProtocol.writeResponseHeader(at: body, opcode: get, keyLength: 0, extrasLength: 0, status: .keyNotFound,
                                                       bodyLength: text.count, opaque: opaque, cas: 0)
                    (body + header).copyMemory(from: text.baseAddress!, byteCount: text.count)
                }
                return header + BinaryProtocol.notFound.utf8CodeUnitCount
            }
            let value = UnsafeRawBufferPointer(item.value)
            guard header + 4 + value.count <= room else {
                let s = udpSession
                s.reset()
                // (`respond` takes only the opcode and the opaque from the header.)
                BinaryProtocol.respond(s, BinaryProtocol.Header(opcode: get, keyLength: 0, extrasLength: 0, bodyLength: 0, opaque: opaque, cas: 0),
                                       .ok, cas: item.cas, flags: item.flags, value: value)
                return nil
            }
            BinaryProtocol.writeResponseHeader(at: body, opcode: get, keyLength: 0, extrasLength: 4, status: .ok,
                                               bodyLength: 4 + value.count, opaque: opaque, cas: item.cas)
            body.storeBytes(of: item.flags.bigEndian, toByteOffset: header, as: UInt32.self)
            if !value.isEmpty { (body + header + 4).copyMemory(from: value.baseAddress!, byteCount: value.count) }
            return header + 4 + value.count
        }
        parsedGets.store(parsedGets.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        guard let written else {
            udpSession.output.withUnsafeBytes { sendUDP($0, requestID: requestID, to: reply, reusing: &request, port: udp) }
            return true
        }
        if udpOut.isFull { flush(full: udpOut, port: udp) }
        frameReply(&p, bodyLength: written, requestID: requestID, sequence: 0, count: 1, to: reply)
        udpOut.append(p)
        request = nil
        return true
    }
}
