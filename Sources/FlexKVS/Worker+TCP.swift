import CFlexSys
import FlexIO
import FlexNIC
import FlexWire

/// A worker's TCP phase: a connection's frames become its session's input, requests
/// run, and replies leave in order as TCP frames (the port paces slow readers).
extension Worker {
    func handleTCP(_ d: Descriptor, _ steeringCycles: UInt64) {
        let t0 = cflex_rdtsc()
        let port = tcpPort
        defer { finished(d.packet, tcpDone, port) }
        // The pipeline parsed the frame (and sent malformed ones to the slow path).
        let flow = d.packet.flow
        if d.packet.tcpFlags & TCPHeader.Flags.fin.rawValue != 0 {
            // The peer closed, or the port closed the connection (reset, overrun): the
            // session and every reply it still held go at once.
            if sessions.removeValue(forKey: flow) != nil, context.logs(2) { context.logger.info("<\(flow) connection closed.") }
            return
        }
        let session: Session
        if let s = sessions[flow] {
            session = s
        } else if d.payload.count == 0 {
            return  // a resume notice for a connection already closed
        } else {
            session = Session()
            session.outputBudget = Session.tcpOutputBudget
            session.logID = flow
            sessions[flow] = session
            if context.logs(2) { context.logger.info("<\(flow) new auto-negotiating client connection") }
        }
        if session.endpoints == nil {
            session.endpoints = d.packet.replyEndpoints
        }
        // An empty frame: the port sent a paused connection's backlog; held-back
        // requests may run again.
        session.receive(UnsafeRawBufferPointer(d.payload))
        if d.payload.count > 0 { prefetchKeys(of: session) }
        runAndSend(session, flow: flow, since: t0, steeringCycles)
    }

    /// Prefetches what the session's waiting requests (a pipelining client's burst) will
    /// look up, in each partition they touch, so that their cache misses overlap
    /// instead of coming one request at a time; the protocol then takes the keys'
    /// hashes from the scan (`KeyHints`).
    func prefetchKeys(of session: Session) {
        let consumed = session.consumed, dialect = session.dialect, hints = Unmanaged.passUnretained(keyHints)
        let n = session.input.withUnsafeBytes { input -> Int in
            let waiting = UnsafeRawBufferPointer(rebasing: input[consumed...])
            let binary = dialect == .binary || (dialect == .undecided && waiting.first == BinaryProtocol.requestMagic)
            return hints._withUnsafeGuaranteedRef { RequestKeyScanner.scan(waiting, binary: binary, into: $0) }
        }
        guard n > 0 else { return }
        session.keyHints = hints
        prefetch(keyHints.hashes, count: n)
    }

    /// Runs the session's requests and sends their replies, again while requests were
    /// held back for the output budget and their replies leave: it stops when the
    /// session waits for input, for replies from other workers (nothing could be sent;
    /// their arrival runs it again), or for the port to take its backlog (the port's
    /// empty frame runs it again).
    func runAndSend(_ session: Session, flow: UInt32, since t0: UInt64, _ steeringCycles: UInt64) {
        let port = tcpPort
        while true {
            let before = session.commands
            if forwarding != nil { runForwarding(session, flow: flow) } else { ProtocolHandler.run(session, context) }
            let ran = session.commands - before, heldBack = session.heldBack, pending = session.output.count
            sendTCP(session, flow: flow)
            record(commands: ran, since: t0, steeringCycles)
            guard heldBack, session.output.count < pending, sessions[flow] != nil else { break }
            if !tcpOut.isEmpty { _ = port.transmit(queue: queue, tcpOut) }
            if port.isBackpressured(queue: queue, flow: flow) { break }
        }
    }

    func record(commands: Int, since t0: UInt64, _ steeringCycles: UInt64) {
        guard commands > 0 else { return }
        // Only this worker writes its count: a plain store, not a locked add per request.
        requests.store(requests.load(ordering: .relaxed) &+ UInt64(commands), ordering: .relaxed)
        let own = (cflex_rdtsc() &- t0) / UInt64(commands)
        coreCycles.record(own)
        cycles.record(own &+ steeringCycles / UInt64(commands))
    }

    /// Sends the session's reply bytes that are in order (up to the first reply still
    /// out with another worker) as TCP frames on the connection; FIN last once a closing
    /// session has nothing more to send, and the session is forgotten.
    func sendTCP(_ session: Session, flow: UInt32) {
        let port = tcpPort
        guard let endpoints = session.endpoints else { return }
        let total = session.order.sendable(ofOutput: session.output.count)
        let finishing = session.closing && session.order.isEmpty
        var offset = 0
        while offset < total || (finishing && offset == total) {
            if tcpOut.isFull { flush(full: tcpOut, port: port) }
            guard port.allocate(count: 1, into: tcpOut) == 1 else { break }  // pool empty: counted by the port
            var p = tcpOut[tcpOut.count - 1]
            let room = Int(p.capacity) - FrameBuilder.tcpHeadersLength
            let n = min(room, total - offset)
            let last = offset + n == total
            if n > 0 {
                session.output.withUnsafeBytes { b in
                    (p.data + FrameBuilder.tcpHeadersLength).copyMemory(from: b.baseAddress! + offset, byteCount: n)
                }
            }
            // No TCP checksum: the kernel port sends the payload on the connection's socket.
            let length = (try? FrameBuilder.writeTCPHeaders(into: UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)),
                                                            endpoints: endpoints, payloadLength: n,
                                                            flags: last && finishing ? [.fin, .ack] : [.psh, .ack], checksum: false)) ?? 0
            p.length = UInt32(length)
            p.flow = flow
            tcpOut[tcpOut.count - 1] = p
            offset += n
            if last { break }
        }
        session.output.removeFirst(total)
        session.order.sent(total)
        if finishing { sessions.removeValue(forKey: flow) }
    }
}
