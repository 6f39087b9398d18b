import FlexIO
import FlexWire

/// One instance of the software FlexNIC: runs a compiled `SteeringProgram` over bursts
/// from a port and delivers each packet to a core's descriptor ring, the slow-path
/// ring, back out of the port as a reply, or drops it, counting everything.
///
/// Threading: an instance belongs to the one thread that calls `process` (an emulator
/// thread, or a core steering its own rx burst inline). Its rings have that thread as
/// their only producer. The redirection table may be shared and re-programmed by any
/// thread while packets flow.
///
/// The per-packet path takes no lock and allocates nothing, but for a placement
/// element's park on a flow's first wait (`QueuePlacement`).
public final class SteeringPipeline: @unchecked Sendable {
    public let program: SteeringProgram
    public let redirection: RedirectionTable
    public let toeplitz: ToeplitzHash
    /// One ring per core queue; `rings[queues]` is the slow-path ring.
    public let rings: [DescriptorRing]
    /// Per-queue log segments for `appendToLog`, if the application registered any.
    public let logs: [LogSegments]?
    /// Replies installed by the application for `replyFromTable`.
    public let replyTable: ReplyTable?
    /// The program's per-flow registers, if it declares them.
    public let flows: FlowRegisters?
    /// Where `recordAck` raises local senders' ack registers.
    public let acks: AckBoard?
    /// The element behind `place`.
    public let placement: QueuePlacement?
    /// Where a table reply is copied before it is known to be current.
    let replyScratch: UnsafeMutableRawPointer
    public let counters: SteeringCounters
    let code: CompiledProgram
    let verifyL4: Bool
    /// Descriptors gathered per ring during a burst, then enqueued in one call each.
    let staged: UnsafeMutablePointer<Descriptor>
    let stagedCount: UnsafeMutablePointer<Int>
    let stageCapacity: Int
    /// Packets to free at the end of a burst (dropped, ring full).
    let toRelease: PacketBatch
    /// Per core ring, "segment full" notices a full ring refused, oldest first, sent
    /// ahead of the next burst's descriptors: a lost notice would leave its segment
    /// with the core for good. At most one per segment is outstanding, so
    /// `noticeCapacity` (the most segments a queue's log has) always has room.
    let heldNotices: UnsafeMutablePointer<Descriptor>
    let heldNoticeCount: UnsafeMutablePointer<Int>
    let noticeCapacity: Int
    /// Bit r is set if the last `process` call delivered to ring r (rings 0...63), so
    /// the caller can wake the consumers it fed.
    public private(set) var lastDelivered: UInt64 = 0

    /// - Parameters:
    ///   - ringCapacity: slots of each descriptor ring (a power of two): the queue-depth
    ///     limit. A full ring drops (and counts) the packet.
    ///   - redirection: a table to share between instances; nil makes one that spreads
    ///     the program's queues round-robin.
    ///   - logs: one `LogSegments` per queue, required if the program appends to logs.
    ///   - acks: the ack registers `recordAck` raises, required if the program records acks.
    ///   - placement: the element `place` calls, required if the program places.
    ///   - burst: the largest burst `process` is given.
    public init(program: SteeringProgram, ringCapacity: Int = 1024, redirection: RedirectionTable? = nil,
                logs: [LogSegments]? = nil, replyTable: ReplyTable? = nil, acks: AckBoard? = nil,
                placement: QueuePlacement? = nil, burst: Int = 64) throws {
        func uses(_ test: (Action) -> Bool) -> Bool { program.stages.contains { $0.actions.contains(where: test) } }
        if uses({ if case .replyFromTable = $0 { return true }; return false }), replyTable == nil {
            throw ProgramError("\(program.name): answers from a reply table but none was given")
        }
        if uses({ $0 == .recordAck }), acks == nil { throw ProgramError("\(program.name): records acks but no ack board was given") }
        if uses({ if case .place = $0 { return true }; return false }), placement == nil {
            throw ProgramError("\(program.name): places packets but no placement element was given")
        }
        self.replyTable = replyTable
        self.acks = acks
        self.placement = placement
        flows = program.flowRegisters.map(FlowRegisters.init)
        if let placement {
            guard let flows else { throw ProgramError("\(program.name): a placement element needs the program's flow registers") }
            placement.prepare(flows: flows)
        }
        code = try CompiledProgram(program)
        if program.stages.contains(where: { $0.actions.contains { if case .appendToLog = $0 { return true }; return false } }),
           logs?.count != program.queues {
            throw ProgramError("\(program.name): appends to logs but \(logs?.count ?? 0) log segment sets were given for \(program.queues) queues")
        }
        if let redirection, redirection.count != program.redirectionEntries {
            throw ProgramError("\(program.name): redirection table has \(redirection.count) entries, program wants \(program.redirectionEntries)")
        }
        self.program = program
        self.redirection = redirection ?? RedirectionTable(entries: program.redirectionEntries, queues: program.queues)
        toeplitz = ToeplitzHash(key: program.toeplitzKey)
        rings = (0...program.queues).map { _ in DescriptorRing(capacity: ringCapacity) }
        slowPathRing = rings[program.queues]
        self.logs = logs
        counters = SteeringCounters(stages: program.stages.count, queues: program.queues)
        verifyL4 = program.verifyL4Checksums
        // A burst of n packets can stage up to 2n descriptors for one ring (a log
        // record plus a segment-full notice per packet).
        stageCapacity = 2 * burst
        staged = .allocate(capacity: stageCapacity * (program.queues + 1))
        stagedCount = .allocate(capacity: program.queues + 1)
        stagedCount.initialize(repeating: 0, count: program.queues + 1)
        toRelease = PacketBatch(capacity: 3 * burst)
        noticeCapacity = logs?.map(\.segmentCount).max() ?? 0
        heldNotices = .allocate(capacity: max(1, noticeCapacity * program.queues))
        heldNoticeCount = .allocate(capacity: program.queues + 1)
        heldNoticeCount.initialize(repeating: 0, count: program.queues + 1)
        // Allocated last: nothing above may throw after it (a failed init runs no deinit).
        replyScratch = .allocate(byteCount: ReplyTable.capacity, alignment: 64)
    }

    deinit {
        replyScratch.deallocate()
        staged.deallocate()
        stagedCount.deallocate()
        heldNotices.deallocate()
        heldNoticeCount.deallocate()
    }

    /// `rings[queues]`, held apart: read per round, a subscript would retain it.
    public let slowPathRing: DescriptorRing

    // MARK: Burst processing

    /// Steers every packet of `batch` (which is emptied). Replies are appended to
    /// `replies` for the caller to transmit; if `replies` is full a reply is dropped and
    /// counted. Freed packets go back to `port`.
    public func process(_ batch: PacketBatch, port: some PacketPort, replies: PacketBatch) {
        precondition(batch.count <= stageCapacity / 2, "a burst larger than the pipeline's `burst`")
        if let placement, let flows { placement.beginBurst(flows: flows, port: port, replies: replies) }
        if code.keepsState {
            steer(batch, replies: replies, Stateful.self)
        } else {
            steer(batch, replies: replies, Stateless.self)
        }
        flushStaged(port: port)
    }

    /// Runs the program over the burst, staging descriptors per ring (generic only over
    /// the program's shape, so each shape's loop is specialized whatever the port).
    func steer<Shape: ProgramShape>(_ batch: PacketBatch, replies: PacketBatch, _: Shape.Type) {
        let n = batch.count
        counters.count(.packets, UInt64(n))
        for i in 0..<n {
            var p = batch.packets[i]
            let v = steer(&p, Shape.self)
            switch v.kind {
            case .queue:
                stage(Descriptor(packet: p, kind: .packet, hash: v.hash, payloadOffset: v.payloadOffset, detail: v.detail),
                      ring: Int(v.queue))
            case .slowPath:
                counters.countSlowPath(SlowPathReason(rawValue: v.detail) ?? .rule)
                stage(Descriptor(packet: p, kind: .slowPath, hash: v.hash, payloadOffset: v.payloadOffset, detail: v.detail),
                      ring: program.queues)
            case .drop:
                counters.count(.dropped)
                toRelease.append(p)
            case .reply:
                if replies.isFull {
                    counters.count(.dropped)
                    toRelease.append(p)
                } else {
                    counters.count(.replied)
                    replies.append(p)
                }
            case .logged:
                appendToLog(p, v)
            }
        }
        batch.removeAll()
    }

    @inline(__always)
    func stage(_ d: Descriptor, ring: Int) {
        let c = stagedCount[ring]
        staged[ring &* stageCapacity &+ c] = d
        stagedCount[ring] = c &+ 1
    }

    func appendToLog(_ p: Packet, _ v: Verdict) {
        let q = Int(v.queue)
        let log = logs![q]
        switch log.append(p.data + Int(v.logStart), count: Int(v.logLength)) {
        case let .stored(_, data, filled):
            if let filled { announceFull(filled, log: log, queue: q) }
            counters.count(.logged)
            stage(Descriptor(packet: p, kind: .logRecord, hash: v.hash, payloadOffset: v.payloadOffset, detail: v.detail,
                             record: data), ring: q)
        case let .unavailable(filled):
            if let filled { announceFull(filled, log: log, queue: q) }
            // Nothing is lost: the frame itself goes to the slow path.
            counters.countSlowPath(.logUnavailable)
            stage(Descriptor(packet: p, kind: .slowPath, hash: v.hash, payloadOffset: v.payloadOffset,
                             detail: SlowPathReason.logUnavailable.rawValue), ring: program.queues)
        }
    }

    func announceFull(_ filled: (segment: Int, used: Int), log: LogSegments, queue: Int) {
        counters.count(.segmentsFilled)
        let notice = Packet(owner: nil, data: log.segment(filled.segment), length: UInt32(filled.used),
                            capacity: UInt32(log.segmentSize), flow: UInt32(filled.segment))
        stage(Descriptor(packet: notice, kind: .segmentFull), ring: queue)
    }

    func flushStaged(port: some PacketPort) {
        lastDelivered = 0
        for r in 0...program.queues {
            if heldNoticeCount[r] > 0 { sendHeldNotices(ring: r) }
            let c = stagedCount[r]
            guard c > 0 else { continue }
            let base = staged + r &* stageCapacity
            // Behind notices still held, so that they keep their order.
            let sent = heldNoticeCount[r] > 0 ? 0 : deliver(base, count: c, ring: r)
            if sent < c {
                var dropped = 0
                for i in sent..<c {
                    // A full ring drops the frame (a log record's too: its bytes stay
                    // unread in the segment); a notice waits for room.
                    // TODO(flow control): DCCP withholds the ack instead (FlexStorm).
                    if base[i].kind == .segmentFull {
                        precondition(heldNoticeCount[r] < noticeCapacity, "more notices held than the log has segments")
                        heldNotices[r &* noticeCapacity &+ heldNoticeCount[r]] = base[i]
                        heldNoticeCount[r] &+= 1
                    } else {
                        dropped &+= 1
                        if base[i].packet.owner != nil {
                            if toRelease.isFull { port.release(toRelease) }
                            toRelease.append(base[i].packet)
                        }
                    }
                }
                counters.countFull(queue: r, dropped)
            }
            stagedCount[r] = 0
        }
        if !toRelease.isEmpty { port.release(toRelease) }
    }

    /// Enqueues what ring `r` takes of `count` descriptors from `d`, notes the ring as
    /// fed and counts them steered; returns how many it took.
    @inline(__always)
    func deliver(_ d: UnsafeMutablePointer<Descriptor>, count: Int, ring r: Int) -> Int {
        let sent = rings[r].enqueue(d, count: count)
        if sent > 0 && r < 64 { lastDelivered |= 1 << UInt64(r) }
        counters.countSteered(queue: r, sent)
        return sent
    }

    /// Enqueues what ring `r` takes of its held notices; the rest move to the front.
    func sendHeldNotices(ring r: Int) {
        let held = heldNotices + r &* noticeCapacity, n = heldNoticeCount[r]
        let sent = deliver(held, count: n, ring: r)
        if sent < n { held.update(from: held + sent, count: n &- sent) }
        heldNoticeCount[r] = n &- sent
    }

    // MARK: The program

    /// What the program decided for one packet.
    public struct Verdict: Sendable {
        public enum Kind: UInt8, Sendable { case queue, drop, reply, slowPath, logged }
        public var kind: Kind
        public var queue: Int32 = -1
        public var hash: UInt32 = 0
        public var payloadOffset: UInt16 = 0
        /// Slow-path reason, or the deciding stage's index.
        public var detail: UInt8 = 0
        var logStart: UInt16 = 0
        var logLength: UInt16 = 0

        /// A slow-path verdict; `payloadOffset` is where a strip had moved the payload
        /// (so that the core reads the request, not the headers).
        @inline(__always) static func slow(_ r: SlowPathReason, hash: UInt32 = 0, payloadOffset: UInt16 = 0) -> Verdict {
            Verdict(kind: .slowPath, hash: hash, payloadOffset: payloadOffset, detail: r.rawValue)
        }
    }

    /// Runs the program on one packet. A reply is built in place in the packet's buffer
    /// (whose length may change). Counts stage matches; other counting is `process`'s.
    public func steer(_ p: inout Packet) -> Verdict {
        code.keepsState ? steer(&p, Stateful.self) : steer(&p, Stateless.self)
    }

    /// `steer`, compiled twice: for programs with state or DCCP fields, and without
    /// (whose hot loop then has no trace of them).
    @inline(__always)
    func steer<Shape: ProgramShape>(_ p: inout Packet, _: Shape.Type) -> Verdict {
        let frame: ParsedFrame
        do {
            frame = try ParsedFrame(parsing: p.bytes, verifyingChecksum: !p.flags.contains(.headerChecksumGood), ipv6: code.parsesIPv6)
        } catch { return .slow(.malformed) }
        // The packet keeps its header offsets in a byte each (as an mbuf's l2_len and
        // l3_len): a longer IPv6 extension chain goes to the slow path.
        guard frame.l4Offset <= UInt8.max else { return .slow(.malformed) }
        p.l3Offset = UInt8(truncatingIfNeeded: frame.l3Offset)
        p.l4Offset = UInt8(truncatingIfNeeded: frame.l4Offset)
        var st = PacketState()
        if Shape.keepsState && code.readsDCCP && !findDCCP(p, frame, &st) { return .slow(.malformed) }
        if verifyL4 && !l4ChecksumOK(p, frame, st) { return .slow(.badChecksum) }

        var hash: UInt32 = 0
        var hashOut: UInt32 = 0
        // The last text token hashed (`hashToken`): where it starts and how long it is,
        // so that a reply-table lookup of the same key need not find its end again.
        var tokenStart = -1, tokenLength = 0
        var payloadOffset: UInt16 = 0
        var queue: Int32 = -1
        let payload = UnsafeRawPointer(p.data) + Int(frame.payloadOffset)
        let payloadLength = Int(frame.payloadLength)

        let stages = code.stages, instructions = code.instructions
        for s in 0..<stages.count {
            let g = Int(stages[s].guardOffset)
            if g >= 0 && (g >= payloadLength || payload.load(fromByteOffset: g, as: UInt8.self) & stages[s].guardMask != stages[s].guardValue) {
                continue
            }
            guard matches(stages[s], frame, payload, payloadLength, st, Shape.self) else { continue }
            counters.countMatch(stage: s)
            let end = Int(stages[s].actionStart &+ stages[s].actionCount)
            for i in Int(stages[s].actionStart)..<end {
                let ins = instructions[i]
                switch ins.op {
                case .hashFourTuple, .hashSymmetric, .hashAddresses:
                    hash = headerHash(ins.op, p, frame)
                case .hashPayload:
                    let o = Int(ins.a)
                    let n = ins.b < 0 ? payloadLength &- o : Int(ins.b)
                    guard o <= payloadLength, n >= 0, o &+ n <= payloadLength else { return .slow(.payloadOutOfRange, payloadOffset: payloadOffset) }
                    hash = KeyHash.hash(payload + o, count: n)
                case .hashToken:
                    var o = Int(ins.a)
                    while o < payloadLength && payload.load(fromByteOffset: o, as: UInt8.self) == 0x20 { o &+= 1 }
                    guard o < payloadLength else { return .slow(.payloadOutOfRange, payloadOffset: payloadOffset) }
                    let n = TextToken.length(payload + o, limit: min(payloadLength &- o, Int(ins.b) &+ 1))
                    guard n > 0, n <= Int(ins.b) else { return .slow(.payloadOutOfRange, payloadOffset: payloadOffset) }
                    hash = KeyHash.hash(payload + o, count: n)
                    tokenStart = o
                    tokenLength = n
                case .hashField:
                    let lengthAt = Int(ins.b), skipAt = Int(ins.c)
                    guard lengthAt &+ 2 <= payloadLength, skipAt < payloadLength else { return .slow(.payloadOutOfRange, payloadOffset: payloadOffset) }
                    let n = Int(payload.load(fromByteOffset: lengthAt, as: UInt8.self)) << 8
                        | Int(payload.load(fromByteOffset: lengthAt &+ 1, as: UInt8.self))
                    let o = Int(ins.a) &+ (skipAt < 0 ? 0 : Int(payload.load(fromByteOffset: skipAt, as: UInt8.self)))
                    guard n > 0, o &+ n <= payloadLength else { return .slow(.payloadOutOfRange, payloadOffset: payloadOffset) }
                    hash = KeyHash.hash(payload + o, count: n)
                case .writeHash:
                    hashOut = hash
                case .strip:
                    payloadOffset = ins.a == 2 ? frame.l3Offset : ins.a == 3 ? frame.l4Offset : frame.payloadOffset
                case .toQueue:
                    queue = ins.a
                case .redirect:
                    queue = Int32(truncatingIfNeeded: redirection.queue(for: hash))
                case .spread:
                    var mask = UInt64(UInt32(bitPattern: ins.a)) | UInt64(UInt32(bitPattern: ins.b)) << 32
                    for _ in 0..<(Int(hash) % mask.nonzeroBitCount) { mask &= mask &- 1 }
                    queue = Int32(mask.trailingZeroBitCount)
                case .drop:
                    return Verdict(kind: .drop, detail: UInt8(truncatingIfNeeded: s))
                case .slowPath:
                    return Verdict(kind: .slowPath, hash: hashOut, payloadOffset: payloadOffset, detail: SlowPathReason.rule.rawValue)
                case .appendToLog:
                    let o = Int(ins.a)
                    let n = ins.b < 0 ? payloadLength &- o : Int(ins.b)
                    guard o <= payloadLength, n >= 0, o &+ n <= payloadLength else { return .slow(.payloadOutOfRange, payloadOffset: payloadOffset) }
                    return Verdict(kind: .logged, queue: queue, hash: hashOut, payloadOffset: payloadOffset,
                                   detail: UInt8(truncatingIfNeeded: s),
                                   logStart: frame.payloadOffset &+ UInt16(o), logLength: UInt16(n))
                case .replyFromTable:
                    let keyOffset = Int(ins.a)
                    if answerFromTable(&p, frame, hash: hash, keyOffset: keyOffset, maxKeyLength: Int(ins.b), keep: Int(ins.c),
                                       knownKeyLength: tokenStart == keyOffset ? tokenLength : nil) {
                        return Verdict(kind: .reply, detail: UInt8(truncatingIfNeeded: s))
                    }
                case .reply:
                    guard buildReply(&p, frame, edits: Int(ins.a), count: Int(ins.b), st) else {
                        counters.count(.replyErrors)
                        return .slow(.rule)
                    }
                    return Verdict(kind: .reply, detail: UInt8(truncatingIfNeeded: s))
                case .lookupFlow, .compare, .setRegister, .recordAck, .place:
                    if Shape.keepsState { runStateful(ins, p, frame, payload, payloadLength, &st) }
                }
            }
            if queue >= 0 {
                return Verdict(kind: .queue, queue: queue, hash: hashOut, payloadOffset: payloadOffset,
                               detail: UInt8(truncatingIfNeeded: s))
            }
        }
        switch program.defaultDisposition {
        case .drop: return Verdict(kind: .drop, detail: 0xFF)
        case .slowPath: return Verdict(kind: .slowPath, hash: hashOut, payloadOffset: payloadOffset, detail: SlowPathReason.rule.rawValue)
        case .queue(let q): return Verdict(kind: .queue, queue: Int32(q), hash: hashOut, payloadOffset: payloadOffset, detail: 0xFF)
        }
    }

    /// The Toeplitz hash of the frame's addresses (and ports) an action asks for. Out of
    /// line: inlined, its loop-invariant parts (byte swaps, the symmetric hash's
    /// ordering) were computed for every packet of every program, wanted or not.
    @inline(never)
    func headerHash(_ op: CompiledProgram.Op, _ p: Packet, _ frame: ParsedFrame) -> UInt32 {
        let ipv6Addresses = UnsafeRawPointer(p.data) + Int(frame.l3Offset) + 8
        let ipv6 = frame.layers.contains(.ipv6)
        switch op {
        case .hashFourTuple:
            return ipv6
                ? toeplitz.hashIPv6(addresses: ipv6Addresses, sourcePort: frame.sourcePort, destinationPort: frame.destinationPort)
                : toeplitz.hash(source: frame.sourceAddress, destination: frame.destinationAddress,
                                sourcePort: frame.sourcePort, destinationPort: frame.destinationPort)
        case .hashSymmetric:
            return ipv6
                ? toeplitz.symmetricHashIPv6(addresses: ipv6Addresses, sourcePort: frame.sourcePort, destinationPort: frame.destinationPort)
                : toeplitz.symmetricHash(source: frame.sourceAddress, destination: frame.destinationAddress,
                                         sourcePort: frame.sourcePort, destinationPort: frame.destinationPort)
        default:
            return ipv6
                ? toeplitz.hashIPv6(addresses: ipv6Addresses, sourcePort: nil, destinationPort: nil)
                : toeplitz.hash(source: frame.sourceAddress, destination: frame.destinationAddress)
        }
    }

    /// The stateful actions (kept out of `steer`'s loop, which header-only programs
    /// run hot): they read and write the flow registers and the packet's metadata.
    @inline(never)
    func runStateful(_ ins: CompiledProgram.Instruction, _ p: Packet, _ frame: ParsedFrame, _ payload: UnsafeRawPointer,
                     _ payloadLength: Int, _ st: inout PacketState) {
        switch ins.op {
        case .lookupFlow:
            let flows = flows.unsafelyUnwrapped
            let opening = ins.a < 0 || holds(code.operands[Int(ins.a)], frame, payload, payloadLength, st)
            let found = flows.lookup(address: frame.sourceAddress, port: st.hasDCCP ? st.dccp.sourcePort : frame.sourcePort,
                                     opening: opening)
            st.flowRow = Int32(truncatingIfNeeded: found.row)
            st.flowState = found.state.rawValue
        case .compare:
            guard st.flowRow >= 0, let v = value(code.operands[Int(ins.a)], frame, payload, payloadLength, st, Stateful.self) else { return }
            let register = flows.unsafelyUnwrapped[Int(st.flowRow), Int(ins.b)]
            st.setComparison(slot: Int(ins.c), v < register ? .less : v == register ? .equal : .greater)
        case .setRegister:
            guard st.flowRow >= 0, let v = value(code.operands[Int(ins.a)], frame, payload, payloadLength, st, Stateful.self) else { return }
            flows.unsafelyUnwrapped[Int(st.flowRow), Int(ins.b)] = v &+ code.constants[Int(ins.c)]
        case .recordAck:
            if st.hasDCCP {
                let d = st.dccp
                _ = acks.unsafelyUnwrapped.record(port: d.destinationPort, acknowledgement: d.acknowledgement)
            }
        case .place:
            guard st.flowRow >= 0, st.hasDCCP else { return }
            st.placement = placement.unsafelyUnwrapped.place(p, frame, dccp: st.dccp, targetAt: Int(ins.a), flow: Int(st.flowRow)).rawValue
        default: break
        }
    }

    /// Finds the frame's DCCP header for a program that reads it; false if the header
    /// is malformed (the frame goes to the slow path).
    @inline(never)
    func findDCCP(_ p: Packet, _ frame: ParsedFrame, _ st: inout PacketState) -> Bool {
        switch DCCPView.read(p, frame, inUDP: program.dccpInUDP) {
        case .success(let d)?:
            st.dccpHeader = d.base
            st.dccpOffset = Int32(truncatingIfNeeded: d.offset)
            st.dccpLength = Int32(truncatingIfNeeded: d.length)
            if d.extended { st.dccpSequence = d.sequence }
            return true
        case .failure?: return false
        case nil: return true
        }
    }

    @inline(__always)
    func matches<Shape: ProgramShape>(_ stage: CompiledProgram.Stage, _ f: ParsedFrame, _ payload: UnsafeRawPointer, _ payloadLength: Int,
                                      _ st: PacketState, _: Shape.Type) -> Bool {
        let fields = code.fields
        var i = Int(stage.fieldStart)
        let fieldEnd = i &+ Int(stage.fieldCount)
        while i < fieldEnd {
            let m = fields[i]
            guard let v = value(m, f, payload, payloadLength, st, Shape.self) else { return false }
            let inPattern = m.isRange ? v >= m.lo && v <= m.hi : v & m.hi == m.lo
            if inPattern == m.negated { return false }
            i &+= 1
        }
        let payloads = code.payloads
        var j = Int(stage.payloadStart)
        let payloadEnd = j &+ Int(stage.payloadCount)
        while j < payloadEnd {
            let m = payloads[j]
            let o = Int(m.offset), n = Int(m.length)
            guard o &+ n <= payloadLength else { return false }
            let pattern = code.pool.baseAddress.unsafelyUnwrapped + Int(m.pool)
            let mask = pattern + n
            for k in 0..<n where payload.load(fromByteOffset: o &+ k, as: UInt8.self) & mask[k] != pattern[k] {
                return false
            }
            j &+= 1
        }
        return true
    }

    /// Whether field match `m` holds (a field the packet lacks never does), for the
    /// fields actions read (`lookupFlow` conditions).
    func holds(_ m: CompiledProgram.Field, _ f: ParsedFrame, _ payload: UnsafeRawPointer, _ payloadLength: Int,
               _ st: PacketState) -> Bool {
        guard let v = value(m, f, payload, payloadLength, st, Stateful.self) else { return false }
        let inPattern = m.isRange ? v >= m.lo && v <= m.hi : v & m.hi == m.lo
        return inPattern != m.negated
    }

    /// The value of `m`'s field in this packet, or nil if it has none: what stages
    /// match and actions read. Programs without state never read metadata or DCCP
    /// fields: their specialization has no trace of those branches.
    @inline(__always)
    func value<Shape: ProgramShape>(_ m: CompiledProgram.Field, _ f: ParsedFrame, _ payload: UnsafeRawPointer, _ payloadLength: Int,
                                    _ st: PacketState, _: Shape.Type) -> UInt64? {
        switch m.source {
        case .etherType: return UInt64(f.etherType)
        case .vlanID: return f.layers.contains(.vlan) ? UInt64(f.vlanID) : nil
        case .ipProtocol: return f.layers.contains(.ipv4) ? UInt64(f.ipProtocol) : nil
        case .sourceAddress: return f.layers.contains(.ipv4) ? UInt64(f.sourceAddress) : nil
        case .destinationAddress: return f.layers.contains(.ipv4) ? UInt64(f.destinationAddress) : nil
        case .sourcePort: return f.hasPorts ? UInt64(f.sourcePort) : nil
        case .destinationPort: return f.hasPorts ? UInt64(f.destinationPort) : nil
        case .tcpFlags: return f.layers.contains(.tcp) ? UInt64(f.tcpFlags) : nil
        case .payloadLength: return UInt64(f.payloadLength)
        case .payloadWord:
            let o = Int(m.offset), w = Int(m.width)
            guard o &+ w <= payloadLength else { return nil }
            var x: UInt64 = 0
            for k in 0..<w { x = x << 8 | UInt64(payload.load(fromByteOffset: o &+ k, as: UInt8.self)) }
            return x
        case .flowState, .comparison, .placement, .dccpType, .dccpExtended, .dccpSourcePort, .dccpDestinationPort:
            return Shape.keepsState ? metadataOrDCCPValue(m, f, st) : nil
        case .dccpSequence: return Shape.keepsState ? st.dccpSequence : nil
        case .flowRegister:
            return Shape.keepsState && st.flowRow >= 0 ? flows.unsafelyUnwrapped[Int(st.flowRow), Int(m.offset)] : nil
        }
    }

    /// Metadata, or a DCCP header field but the sequence number: cheap reads.
    @inline(__always)
    func metadataOrDCCPValue(_ m: CompiledProgram.Field, _ f: ParsedFrame, _ st: PacketState) -> UInt64? {
        switch m.source {
        case .flowState: return UInt64(st.flowState)
        case .comparison: return UInt64(st.comparison(slot: Int(m.offset)))
        case .placement: return UInt64(st.placement)
        default: break
        }
        guard let h = st.dccpHeader else { return m.source == .dccpType && f.layers.contains(.dccp) ? UInt64(f.dccpType) : nil }
        switch m.source {
        case .dccpType: return UInt64(h.load(fromByteOffset: 8, as: UInt8.self) >> 1 & 0x0F)
        case .dccpExtended: return UInt64(h.load(fromByteOffset: 8, as: UInt8.self) & 1)
        case .dccpSourcePort: return UInt64(UnsafeRawPointer(h).loadBE16(at: 0))
        default: return UInt64(UnsafeRawPointer(h).loadBE16(at: 2))
        }
    }

    func l4ChecksumOK(_ p: Packet, _ f: ParsedFrame, _ st: PacketState) -> Bool {
        guard f.layers.contains(.ipv4), !f.layers.contains(.fragment) else { return true }
        let ip = IPv4Header(unchecked: p.data + Int(f.l3Offset), headerLength: Int(f.l4Offset - f.l3Offset))
        let l4 = p.data + Int(f.l4Offset)
        let length = Int(f.payloadOffset - f.l4Offset) + Int(f.payloadLength)
        if st.hasDCCP && f.layers.contains(.udp) {
            // DCCP in UDP: the datagram's checksum (if it has one) and DCCP's own.
            guard UDPHeader(unchecked: l4).verifyChecksum(ip: ip) else { return false }
            let d = st.dccp
            return (try? d.header.verifyChecksum(ip: ip, packetLength: d.length)) != nil
        }
        if f.layers.contains(.udp) { return UDPHeader(unchecked: l4).verifyChecksum(ip: ip) }
        if f.layers.contains(.tcp) { return TCPHeader(unchecked: l4, headerLength: 20).verifyChecksum(ip: ip, segmentLength: length) }
        if f.layers.contains(.dccp) {
            guard let d = try? DCCPHeader(UnsafeMutableRawBufferPointer(start: l4, count: length)) else { return false }
            return (try? d.verifyChecksum(ip: ip, packetLength: length)) != nil
        }
        return true
    }
}

/// What the pipeline knows about one packet besides its parsed headers: where its DCCP
/// header is (found once, when the program looks at DCCP) and the metadata its stages'
/// stateful actions wrote for later stages to match. Lives in registers for one
/// `steer` call.
struct PacketState {
    /// The validated DCCP header, at `dccpOffset` in the frame; nil (and -1) if none.
    var dccpHeader: UnsafeMutableRawPointer? = nil
    var dccpOffset: Int32 = -1
    var dccpLength: Int32 = 0
    /// The DCCP sequence number when the header has the long (X=1) form, else nil.
    var dccpSequence: UInt64? = nil
    /// The looked-up flow's row in the flow registers, or -1.
    var flowRow: Int32 = -1
    /// Comparison slots 0...3, one byte each.
    var comparisons: UInt32 = 0
    var flowState: UInt8 = 0
    var placement: UInt8 = 0

    @inline(__always) var hasDCCP: Bool { dccpHeader != nil }
    @inline(__always) var dccp: DCCPView {
        DCCPView(base: dccpHeader.unsafelyUnwrapped, offset: Int(dccpOffset), length: Int(dccpLength))
    }
    @inline(__always) func comparison(slot: Int) -> UInt8 { UInt8(truncatingIfNeeded: comparisons >> UInt32(slot &* 8)) }
    @inline(__always) mutating func setComparison(slot: Int, _ c: Comparison) {
        let shift = UInt32(slot &* 8)
        comparisons = comparisons & ~(0xFF << shift) | UInt32(c.rawValue) << shift
    }
}

/// Whether a program keeps state (flow registers, metadata) or reads DCCP headers: the
/// pipeline's hot path is specialized for each, once, when the program is compiled.
protocol ProgramShape { static var keepsState: Bool { get } }
enum Stateless: ProgramShape { static var keepsState: Bool { false } }
enum Stateful: ProgramShape { static var keepsState: Bool { true } }
