import CFlexSys
import FlexWire

/// One IDS instance's matcher state and its per-packet work: decode, update the flow,
/// scan the packet's port groups with their automata, confirm candidate rules, record
/// alerts. An instance is used by one thread; the engine it reads is shared.
///
/// Per packet nothing is allocated unless a rule fires (the alert is appended).
public final class Inspector {
    public let engine: DetectionEngine
    var flows: FlowTable
    let defragmenter = Defragmenter()
    /// Client-side TCP reassembly (nil: off).
    let reassembler: StreamReassembler?
    let scratch = PatternScratch()
    /// Scratch for the groups' Hyperscan databases (nil: the engine uses none).
    let hyperscan: HyperscanScratch?
    /// `checked[r] == stamp`: rule r was already a candidate for this packet.
    let checked: UnsafeMutablePointer<UInt32>
    var stamp: UInt32 = 0
    let candidates: UnsafeMutablePointer<Int32>
    var candidateCount = 0
    /// The values of a rule's byte_extract variables while it is confirmed.
    let variables = UnsafeMutablePointer<Int>.allocate(capacity: RuleParser.maximumVariables)
    /// Where a tunneled packet's inner packet is put.
    let tunnelScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 14 + 65536, alignment: 64)
    /// Where confirmation writes a packet's normalized URI.
    let uriScratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 64)
    /// Where confirmation writes what a rule's base64_decode decoded.
    let base64Scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 64)
    /// Dechunks and inflates HTTP bodies for file_data and http_client_body.
    let bodyDecoder = HTTPBodyDecoder()
    public private(set) var alerts: [Alert] = []
    /// Per rule: how often it was a candidate (only when profiling rules).
    public private(set) var candidateCounts: [Int]?
    var counts = Counters()
    /// What this instance has done (untracked flows read from the flow table).
    public var counters: Counters {
        var c = counts
        c.untrackedFlows = flows.untracked
        let d = defragmenter.counters
        (c.fragments, c.reassembled, c.fragmentDatagramsDropped, c.fragmentOverlaps) = (d.fragments, d.reassembled, d.dropped, d.overlaps)
        (c.httpBodiesDecoded, c.httpBodiesUndecodable) = (bodyDecoder.decoded, bodyDecoder.failures)
        if let s = reassembler?.counters {
            (c.streamSegments, c.streamPDUs, c.streamOverlaps, c.streamGaps, c.streamSessionsDropped, c.streamOutOfWindow)
                = (s.segments, s.pdus, s.overlaps, s.gaps, s.dropped, s.outOfWindow)
        }
        return c
    }

    public struct Counters: Sendable {
        public var packets = 0
        public var bytes = 0
        /// Frames that are not IPv4 or whose headers are truncated or inconsistent.
        public var undecodable = 0
        /// Packets not inspected because an IPv4, TCP, UDP or ICMP checksum is wrong
        /// (`DetectionEngine.ChecksumMode.all`, Snort's default).
        public var badChecksums = 0
        /// rdtsc cycles spent in `inspect`.
        public var cycles: UInt64 = 0
        /// Automaton scans (one per group per packet with a payload).
        public var scans = 0
        public var candidates = 0
        public var alerts = 0
        /// New flows not tracked because the flow table was full.
        public var untrackedFlows = 0
        /// Packets inspected inside their tunnel (QinQ, MPLS, GRE, IP in IP, VXLAN).
        public var decapsulated = 0
        /// IPv4 fragments taken in, datagrams rebuilt from them, datagrams dropped (bad,
        /// timed out, over the limits) and fragments that overlapped data held.
        public var fragments = 0
        public var reassembled = 0
        public var fragmentDatagramsDropped = 0
        public var fragmentOverlaps = 0
        /// Client TCP segments reassembled, PDUs inspected whole, segments overlapping
        /// data held, holes skipped, sessions dropped over the memory cap.
        public var streamSegments = 0
        public var streamPDUs = 0
        public var streamOverlaps = 0
        public var streamGaps = 0
        public var streamSessionsDropped = 0
        /// Client segments too far ahead of their stream to be part of it (not held).
        public var streamOutOfWindow = 0
        /// HTTP requests inspected after the first of their packet (pipelined); bodies
        /// dechunked or inflated, and bodies that would not inflate.
        public var pipelinedRequests = 0
        public var httpBodiesDecoded = 0
        public var httpBodiesUndecodable = 0

        public init() {}

        public static func + (a: Counters, b: Counters) -> Counters {
            var c = a
            c.packets += b.packets
            c.bytes += b.bytes
            c.undecodable += b.undecodable
            c.badChecksums += b.badChecksums
            c.cycles += b.cycles
            c.scans += b.scans
            c.candidates += b.candidates
            c.alerts += b.alerts
            c.untrackedFlows += b.untrackedFlows
            c.decapsulated += b.decapsulated
            c.fragments += b.fragments
            c.reassembled += b.reassembled
            c.fragmentDatagramsDropped += b.fragmentDatagramsDropped
            c.fragmentOverlaps += b.fragmentOverlaps
            c.streamSegments += b.streamSegments
            c.streamPDUs += b.streamPDUs
            c.streamOverlaps += b.streamOverlaps
            c.streamGaps += b.streamGaps
            c.streamSessionsDropped += b.streamSessionsDropped
            c.streamOutOfWindow += b.streamOutOfWindow
            c.pipelinedRequests += b.pipelinedRequests
            c.httpBodiesDecoded += b.httpBodiesDecoded
            c.httpBodiesUndecodable += b.httpBodiesUndecodable
            return c
        }
    }

    let verifiesChecksums: Bool

    /// `profileRules`: count how often each rule is a candidate (`candidateCounts`).
    public init(engine: DetectionEngine, flowCapacity: Int = 1 << 16, profileRules: Bool = false) {
        self.engine = engine
        verifiesChecksums = engine.checksums == .all
        flows = FlowTable(capacity: flowCapacity, flowbits: engine.flowbitCount,
                          tracksSequences: engine.rules.contains { $0.streamSize != nil })
        reassembler = engine.reassemblesStreams ? StreamReassembler(slotCount: flows.slotCount) : nil
        let databases = engine.groups.compactMap(\.database)
        hyperscan = databases.isEmpty ? nil : HyperscanScratch(for: databases)
        let n = max(engine.rules.count, 1)
        checked = .allocate(capacity: n)
        checked.initialize(repeating: 0, count: n)
        candidates = .allocate(capacity: n)
        alerts.reserveCapacity(4096)
        if profileRules { candidateCounts = Array(repeating: 0, count: n) }
    }

    deinit {
        checked.deallocate()
        candidates.deallocate()
        variables.deallocate()
        uriScratch.deallocate()
        base64Scratch.deallocate()
        tunnelScratch.deallocate()
    }

    /// Inspects one Ethernet frame, trace packet `number`; returns its parsed headers
    /// (nil: not IPv4 or undecodable, counted).
    @inline(__always) @discardableResult
    public func inspect(_ received: UnsafeMutableRawBufferPointer, number: Int, timestampNanoseconds: UInt64) -> ParsedFrame? {
        let start = cflex_rdtsc()
        defer { counts.cycles &+= cflex_rdtsc() &- start }
        counts.packets &+= 1
        counts.bytes &+= received.count
        // Rules see the packet inside a tunnel.
        var frame = received
        if let inner = Decapsulation.inner(UnsafeRawBufferPointer(received), scratch: tunnelScratch) {
            frame = inner
            counts.decapsulated &+= 1
        }
        // A transport header that does not parse (a bad TCP data offset) leaves the
        // packet to `ip` rules, as Snort's decoder does.
        let decoded = (try? ParsedFrame(parsing: frame, verifyingChecksum: verifiesChecksums))
            ?? (try? ParsedFrame(parsing: frame, verifyingChecksum: verifiesChecksums, transport: false))
        guard let parsed = decoded, parsed.hasIP else {
            if decoded == nil && verifiesChecksums && (try? ParsedFrame(parsing: frame, verifyingChecksum: false, transport: false)) != nil {
                counts.badChecksums &+= 1
            } else {
                counts.undecodable &+= 1
            }
            return nil
        }
        if parsed.layers.contains(.fragment) {
            inspectFragment(frame, parsed, number: number, timestampNanoseconds: timestampNanoseconds)
            return parsed
        }
        if verifiesChecksums && !Self.transportChecksumVerifies(frame, parsed) {
            counts.badChecksums &+= 1
            return nil
        }
        let first = alerts.count
        let flow = detect(frame, parsed, number: number, timestampNanoseconds: timestampNanoseconds)
        reassemble(frame, parsed, flow, number: number, timestampNanoseconds: timestampNanoseconds, alertsFrom: first)
        return parsed
    }

    /// Rule ids of a packet's alerts, handed to reassembly (reused, so nothing is
    /// allocated per packet).
    var packetAlerts: [Int32] = []

    /// Hands a TCP packet to stream reassembly, with the rules its alerts from
    /// `alertsFrom` on came from; inspects the PDUs it completes.
    func reassemble(_ frame: UnsafeMutableRawBufferPointer, _ parsed: ParsedFrame, _ flow: FlowVerdict, number: Int,
                    timestampNanoseconds: UInt64, alertsFrom first: Int) {
        guard let reassembler, parsed.layers.contains(.tcp), flow.tracked else { return }
        packetAlerts.removeAll(keepingCapacity: true)
        for a in alerts[first...] { packetAlerts.append(a.rule) }
        reassembler.take(UnsafeRawBufferPointer(frame), parsed, flow, packet: number, time: timestampNanoseconds,
                         alerted: packetAlerts, inspect: inspectPDU)
    }

    /// Detection on a PDU the reassembler rebuilt, as its last segment.
    func inspectPDU(_ frame: UnsafeMutableRawBufferPointer, _ s: StreamReassembler.Stream) {
        guard let parsed = try? ParsedFrame(parsing: frame, verifyingChecksum: false) else {
            counts.undecodable &+= 1
            return
        }
        detect(frame, parsed, number: s.lastPacket, timestampNanoseconds: s.lastTime, alreadyAlerted: s.alerted, stream: s.verdict)
    }

    /// Inspects what reassembly still holds (call at the end of a capture).
    public func finish() {
        reassembler?.flushAll(inspectPDU)
    }

    /// A fragment, as Snort's frag3 and detection treat it: it goes into its datagram;
    /// if it completes it, the rebuilt datagram is inspected whole (decoded to the
    /// transport layer, checksums verified) and the fragment itself is not. Otherwise
    /// the fragment meets only the rules that do not look at payload, as an IP packet
    /// (no transport header: that is in the first fragment only), except a first UDP
    /// fragment, which is inspected as it is.
    func inspectFragment(_ frame: UnsafeMutableRawBufferPointer, _ parsed: ParsedFrame, number: Int, timestampNanoseconds: UInt64) {
        let firstUDP = parsed.ipProtocol == 17 && Defragmenter.position(parsed, UnsafeRawBufferPointer(frame)).start == 0
        let l3 = firstUDP ? parsed : (try? ParsedFrame(parsing: frame, verifyingChecksum: false, transport: false)) ?? parsed
        if let (datagram, alerted) = defragmenter.insert(frame, l3, now: timestampNanoseconds) {
            guard let whole = try? ParsedFrame(parsing: datagram, verifyingChecksum: false) else {
                counts.undecodable &+= 1
                return
            }
            if verifiesChecksums && !Self.transportChecksumVerifies(datagram, whole) {
                counts.badChecksums &+= 1
                return
            }
            let first = alerts.count
            let flow = detect(datagram, whole, number: number, timestampNanoseconds: timestampNanoseconds, alreadyAlerted: alerted)
            reassemble(datagram, whole, flow, number: number, timestampNanoseconds: timestampNanoseconds, alertsFrom: first)
            return
        }
        let first = alerts.count
        detect(frame, l3, number: number, timestampNanoseconds: timestampNanoseconds, payloadRules: firstUDP)
        let key = Defragmenter.key(l3, UnsafeRawBufferPointer(frame))
        for a in alerts[first...] { defragmenter.noteAlert(a.rule, key: key) }
    }

    /// Detection on one decoded packet: the flow, the candidates (each port group's
    /// automaton over the payload, plus its content-less rules), their confirmation,
    /// the alerts. `payloadRules` false: only rules that do not look at the payload
    /// (a fragment's); rules in `alreadyAlerted` raise nothing (they alerted on a
    /// fragment of this datagram, or a segment of this PDU). `stream`: the packet is a
    /// rebuilt PDU of a flow in this state (the flow is not updated again). Returns
    /// the packet's flow verdict.
    @discardableResult
    func detect(_ frame: UnsafeMutableRawBufferPointer, _ parsed: ParsedFrame, number: Int, timestampNanoseconds: UInt64,
                payloadRules: Bool = true, alreadyAlerted: [Int32] = [], stream: FlowVerdict? = nil) -> FlowVerdict {
        let isTCP = parsed.layers.contains(.tcp)
        var senderIsServer = false
        if parsed.hasPorts {
            let sourceServes = engine.isServicePort(parsed.sourcePort, tcp: isTCP)
            let destinationServes = engine.isServicePort(parsed.destinationPort, tcp: isTCP)
            senderIsServer = sourceServes != destinationServes ? sourceServes
                : parsed.sourcePort < 1024 && parsed.destinationPort >= 1024
        }
        let endpoints = PacketAddresses(parsed, UnsafeRawPointer(frame.baseAddress!))
        let sequence = isTCP ? UnsafeRawPointer(frame.baseAddress!).loadBE32(at: Int(parsed.l4Offset) + 4) : 0
        let flow = stream ?? flows.update(parsed, endpoints, sequence: sequence, senderIsServer: senderIsServer)
        // ICMP rules look past the 8-byte ICMP (or ICMPv6) header, as Snort's do.
        let skip = parsed.isICMP && !parsed.layers.contains(.fragment) ? 8 : 0
        let payloadStart = min(Int(parsed.payloadOffset) + skip, frame.count)
        let payload = UnsafeRawBufferPointer(start: frame.baseAddress! + payloadStart,
                                             count: max(0, min(Int(parsed.payloadLength) - skip, frame.count - payloadStart)))
        let first = alerts.count
        let requestEnd = detect(payload, of: frame, parsed, endpoints, flow, number: number, timestampNanoseconds: timestampNanoseconds,
                                payloadRules: payloadRules, alreadyAlerted: alreadyAlerted, isStream: stream != nil)
        // Pipelined HTTP requests: each one after the first is inspected as a payload of
        // its own (http_inspect's default), without repeating the packet's alerts.
        guard payloadRules && isTCP, var next = requestEnd, next < payload.count else { return flow }
        var requests = 1
        while next < payload.count && requests < Self.maximumPipelinedRequests {
            let rest = UnsafeRawBufferPointer(rebasing: payload[next...])
            guard HTTPBuffers.startsRequest(rest) else { break }
            let end = detect(rest, of: frame, parsed, endpoints, flow, number: number, timestampNanoseconds: timestampNanoseconds,
                             payloadRules: true, alreadyAlerted: alreadyAlerted + alerts[first...].map(\.rule), isStream: stream != nil)
            counts.pipelinedRequests &+= 1
            requests += 1
            guard let end, end > 0 else { break }
            next += end
        }
        return flow
    }

    /// Pipelined requests inspected per packet at most.
    static let maximumPipelinedRequests = 32

    /// Detection on `payload` (the packet's, or one pipelined request of it): the
    /// candidates, their confirmation, the alerts. Returns where the payload's HTTP
    /// request ends, if it is one whose length is known (a pipelined one may follow).
    @discardableResult
    func detect(_ payload: UnsafeRawBufferPointer, of frame: UnsafeMutableRawBufferPointer, _ parsed: ParsedFrame,
                _ endpoints: PacketAddresses, _ flow: FlowVerdict, number: Int, timestampNanoseconds: UInt64,
                payloadRules: Bool, alreadyAlerted: [Int32], isStream: Bool) -> Int? {
        // Candidates: each group's automaton over the payload, plus its content-less rules.
        stamp &+= 1
        if stamp == 0 {
            checked.update(repeating: 0, count: max(engine.rules.count, 1))
            stamp = 1
        }
        candidateCount = 0
        let scanned = payloadRules ? payload : UnsafeRawBufferPointer(start: payload.baseAddress, count: 0)
        // The context parses HTTP and normalizes the URI once, for the fast patterns
        // here and for confirmation below.
        var context = PacketContext(frame: parsed, endpoints: endpoints, isStream: isStream, bytes: UnsafeRawPointer(frame.baseAddress!), payload: payload, flow: flow,
                                    scratch: scratch, variables: variables, uriScratch: uriScratch, base64Scratch: base64Scratch,
                                    bodyDecoder: bodyDecoder)
        // An encoded request URI is scanned again normalized, and a coded body again
        // decoded, so http_uri and file_data fast patterns meet what their contents will
        // be matched against.
        let also = payloadRules ? (context.encodedURI(), context.decodedBody()) : (nil, nil)
        if let table = engine.table(for: parsed) {
            for k in table.destination.range(parsed.destinationPort) { collect(table.destination.ids[k], scanned, endpoints, also: also) }
            for k in table.source.range(parsed.sourcePort) { collect(table.source.ids[k], scanned, endpoints, also: also) }
        }
        let catchAll = engine.catchAllGroups(for: parsed)
        collect(catchAll.0, scanned, endpoints, also: also)
        collect(catchAll.1, scanned, endpoints, also: also)
        let requestEnd = payloadRules && HTTPBuffers.startsRequest(payload) ? context.requestEnd() : nil
        guard candidateCount > 0 else { return requestEnd }
        counts.candidates &+= candidateCount

        // Snort's order of actions (pass, reject, alert, log): only the first group
        // with a match is output, so a matching pass rule silences the packet and a
        // reject match hides alert rules' events; log rules raise no alert, and
        // noalert rules only change flowbits.
        let firstAlert = alerts.count
        var passed = false, rejected = false
        for k in 0..<candidateCount {
            let r = candidates[k]
            let rule = engine.ruleStorage + Int(r)
            if !payloadRules && rule.pointee.looksAtPayload { continue }
            guard context.matches(rule), !rule.pointee.noAlert, !alreadyAlerted.contains(r) else { continue }
            switch rule.pointee.action {
            case .pass: passed = true
            case .reject:
                if !rejected { alerts.removeSubrange(firstAlert...) }
                rejected = true
            case .alert: if rejected { continue }
            case .log, .drop, .sdrop: continue
            }
            if passed { continue }
            alerts.append(Alert(packet: number, timestampNanoseconds: timestampNanoseconds, rule: r,
                                proto: parsed.ipProtocol, source: endpoints.source, destination: endpoints.destination,
                                sourcePort: parsed.sourcePort, destinationPort: parsed.destinationPort))
        }
        if passed { alerts.removeSubrange(firstAlert...) }
        counts.alerts &+= alerts.count - firstAlert
        return requestEnd
    }

    /// Whether the TCP, UDP or ICMP checksum verifies (true for fragments, which are
    /// checked whole or not at all, other protocols, and UDP without a checksum).
    static func transportChecksumVerifies(_ frame: UnsafeMutableRawBufferPointer, _ f: ParsedFrame) -> Bool {
        guard !f.layers.contains(.fragment) else { return true }
        let base = frame.baseAddress!
        let l4 = base + Int(f.l4Offset)
        let length = Int(f.payloadOffset - f.l4Offset) + Int(f.payloadLength)
        if f.layers.contains(.ipv6) {
            // Every IPv6 upper layer checksums the pseudo-header, UDP included (a zero
            // UDP checksum is invalid over IPv6).
            guard f.layers.contains(.tcp) || f.layers.contains(.udp) || f.ipProtocol == 58 else { return true }
            var sum = IPv6Header.pseudoHeaderChecksum(header: base + Int(f.l3Offset), l4Length: length, protocol: f.ipProtocol)
            sum.add(bytes: l4, count: length)
            return sum.verifies
        }
        let ip = IPv4Header(unchecked: base + Int(f.l3Offset), headerLength: Int(f.l4Offset - f.l3Offset))
        if f.layers.contains(.udp) { return UDPHeader(unchecked: l4).verifyChecksum(ip: ip) }
        if f.layers.contains(.tcp) { return TCPHeader(unchecked: l4, headerLength: 20).verifyChecksum(ip: ip, segmentLength: length) }
        if f.ipProtocol == 1 {
            var sum = InternetChecksum()
            sum.add(bytes: l4, count: length)
            return sum.verifies
        }
        return true
    }

    @inline(__always)
    func collect(_ id: Int32, _ payload: UnsafeRawBufferPointer, _ endpoints: PacketAddresses,
                 also: (uri: UnsafeRawBufferPointer?, body: UnsafeRawBufferPointer?)) {
        guard id >= 0 else { return }
        let group = engine.groups[Int(id)]
        for r in group.alwaysRules { add(r) }
        group.sourceListed.forEachRule(containing: endpoints.source, add)
        group.destinationListed.forEachRule(containing: endpoints.destination, add)
        guard payload.count > 0, group.patternCount > 0 else { return }
        counts.scans &+= 1
        group.patternRuleStart.withUnsafeBufferPointer { start in
            group.patternRules.withUnsafeBufferPointer { list in
                @inline(__always) func addRules(ofPattern p: Int32) {
                    for k in Int(start[Int(p)])..<Int(start[Int(p) + 1]) { add(list[k]) }
                }
                @inline(__always) func scan(_ bytes: UnsafeRawBufferPointer) {
                    if let database = group.database, let hyperscan {
                        let found = database.scan(bytes, hyperscan)
                        for i in 0..<found { addRules(ofPattern: hyperscan.sink.pointee.ids[i]) }
                    } else if let automaton = group.automaton {
                        automaton.scan(bytes, addRules)
                    }
                }
                scan(payload)
                if let uri = also.uri { scan(uri) }
                if let body = also.body { scan(body) }
            }
        }
    }

    @inline(__always)
    func add(_ rule: Int32) {
        guard checked[Int(rule)] != stamp else { return }
        checked[Int(rule)] = stamp
        candidateCounts?[Int(rule)] += 1
        candidates[candidateCount] = rule
        candidateCount &+= 1
    }

    /// Inspects record `i` of `trace`; returns its parsed headers (nil: not inspected).
    @inline(__always) @discardableResult
    public func inspect(_ trace: Trace, record i: Int) -> ParsedFrame? {
        let r = trace.records[i]
        return inspect(trace.frame(i), number: r.number, timestampNanoseconds: r.timestampNanoseconds)
    }

    /// Takes the alerts recorded so far.
    public func takeAlerts() -> [Alert] {
        defer { alerts.removeAll(keepingCapacity: true) }
        return alerts
    }
}
