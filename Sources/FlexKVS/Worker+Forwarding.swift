import CFlexSys
import FlexIO
import FlexNIC
import FlexWire

/// TCP under key steering: a connection stays with the worker that accepted it; its
/// requests whose shard another worker owns travel to that worker over rings
/// (`TCPForwarding`) and their replies come back into the connection's order.
extension Worker {
    /// Runs the session's complete requests: those whose key another worker owns are
    /// forwarded to it, the rest run here. A request that could meet a forwarded one's
    /// key (one running here for a foreign key, or a `local` one) waits until the
    /// session has nothing away, so every key sees the session's requests in order.
    func runForwarding(_ s: Session, flow: UInt32) {
        guard ProtocolHandler.decideDialect(s, context) else { return }
        let store = context.store
        while !s.closing && s.output.count < s.outputBudget {
            switch RequestFramer.next(s, maxLength: Self.forwardBufferSize) {
            case .incomplete:
                s.compact()
                return
            case .local:
                // It may touch any key: it waits until the session's forwarded requests
                // are answered (their replies resume it).
                guard s.order.isEmpty else { return }
                let unparsed = s.unparsed, swallow = s.swallow
                ProtocolHandler.run(s, context, through: s.consumed)
                if s.unparsed == unparsed && s.swallow == swallow { return }  // waits for more input
            case let .keyed(length, keyStart, keyLength):
                let hash = s.input.withUnsafeBytes { KVStore.hash(UnsafeRawBufferPointer(rebasing: $0[keyStart..<(keyStart + keyLength)])) }
                // The owner first: a move counts itself before it re-points the entry,
                // so seeing a new owner means seeing the move.
                let owner = store.shards.queueAcquiring(for: hash)
                // A shard moved while requests of this session were away: one for a
                // moved key may still wait at its old owner, so this one waits too.
                let moves = store.shardMoves.load(ordering: .relaxed)
                guard s.order.isEmpty || moves == s.forwardedAtMove else { return }
                s.forwardedAtMove = moves
                if owner != queue {
                    if forward(s, flow: flow, length: length, hash: hash, to: owner) {
                        s.consumed += length
                        continue
                    }
                    // No room to send it: it may run here (locked) only with nothing of
                    // this session away, where an earlier request for its key could be.
                    guard s.order.isEmpty else { return }
                }
                s.hashHint = hash
                ProtocolHandler.run(s, context, through: s.consumed)
            }
        }
        s.compact()
    }

    /// Sends the `length`-byte request at the session's `consumed` offset to `owner`.
    /// False if it must run here (no buffer, or the owner has a ring's worth in flight).
    func forward(_ s: Session, flow: UInt32, length: Int, hash: UInt32, to owner: Int) -> Bool {
        guard let forwarding, let pool = forwardPool, inFlight[owner] < forwarding.ringCapacity else { return false }
        if forwardSpares.isEmpty && pool.allocate(count: forwardSpares.capacity / 2, into: forwardSpares) == 0 { return false }
        let buffer = forwardSpares.removeLast()
        s.input.withUnsafeBytes { buffer.data.copyMemory(from: $0.baseAddress! + s.consumed, byteCount: length) }
        var b = buffer
        b.length = UInt32(length)
        let sequence = s.order.open(at: s.output.count)
        let request = ForwardedRequest(buffer: b, flow: flow, hash: hash, sequence: sequence, binary: s.dialect == .binary)
        precondition(forwarding.requests[queue][owner].enqueue(request), "forward ring over its in-flight limit")
        inFlight[owner] += 1
        wakeMask |= 1 << UInt64(owner)
        forwarded.wrappingAdd(1, ordering: .relaxed)
        return true
    }

    /// Serves requests other workers forwarded to us, and puts the replies to ours into
    /// their connections' output.
    func serveForwarding() -> Int {
        guard let forwarding else { return 0 }
        var work = 0
        for origin in 0..<forwarding.requests.count where origin != queue {
            let got = forwarding.requests[origin][queue].dequeue(into: forwardInbox, maximum: 64)
            guard got > 0 else { continue }
            let t0 = cflex_rdtsc()
            var commands = 0
            for i in 0..<got {
                let s = forwardedSession
                s.reset()
                s.dialect = forwardInbox[i].isBinary ? .binary : .text
                s.hashHint = forwardInbox[i].hash
                s.receive(forwardInbox[i].bytes)
                ProtocolHandler.run(s, context)
                commands += s.commands
                forwardInbox[i].setReply(s.output)
            }
            let sent = forwarding.replies[queue][origin].enqueue(forwardInbox, count: got)
            precondition(sent == got, "reply ring over its in-flight limit")
            wakeMask |= 1 << UInt64(origin)
            forwardedServed.wrappingAdd(UInt64(got), ordering: .relaxed)
            record(commands: commands, since: t0, 0)
            work += got
        }
        for owner in 0..<forwarding.replies.count where owner != queue {
            let got = forwarding.replies[owner][queue].dequeue(into: forwardInbox, maximum: 64)
            guard got > 0 else { continue }
            inFlight[owner] -= got
            for i in 0..<got {
                let reply = forwardInbox[i]
                if let s = sessions[reply.flow], s.order.fill(reply.sequence, with: reply.bytes, in: &s.output), !s.queuedForSend {
                    s.queuedForSend = true
                    toSend.append((reply.flow, s))
                }
                reply.freeSpill()
                if !forwardSpares.isFull {
                    forwardSpares.append(reply.buffer)
                } else {
                    if forwardDone.isFull { forwardPool?.release(forwardDone) }
                    forwardDone.append(reply.buffer)
                }
            }
            work += got
        }
        if !forwardDone.isEmpty { forwardPool?.release(forwardDone) }
        for (flow, s) in toSend {
            s.queuedForSend = false
            runAndSend(s, flow: flow, since: cflex_rdtsc(), 0)  // it may have waited for these replies
        }
        toSend.removeAll(keepingCapacity: true)
        if !tcpOut.isEmpty { _ = tcpPort.transmit(queue: queue, tcpOut) }
        return work
    }
}
