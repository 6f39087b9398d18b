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
    let scratch = PatternScratch()
    /// `checked[r] == stamp`: rule r was already a candidate for this packet.
    let checked: UnsafeMutablePointer<UInt32>
    var stamp: UInt32 = 0
    let candidates: UnsafeMutablePointer<Int32>
    var candidateCount = 0
    /// The values of a rule's byte_extract variables while it is confirmed.
    let variables = UnsafeMutablePointer<Int>.allocate(capacity: RuleParser.maximumVariables)
    public private(set) var alerts: [Alert] = []
    /// Per rule: how often it was a candidate (only when profiling rules).
    public private(set) var candidateCounts: [Int]?
    var counts = Counters()
    /// What this instance has done (untracked flows read from the flow table).
    public var counters: Counters {
        var c = counts
        c.untrackedFlows = flows.untracked
        return c
    }

    public struct Counters: Sendable {
        public var packets = 0
        public var bytes = 0
        /// Frames that are not IPv4 or whose headers are truncated or inconsistent.
        public var undecodable = 0
        /// rdtsc cycles spent in `inspect`.
        public var cycles: UInt64 = 0
        /// Automaton scans (one per group per packet with a payload).
        public var scans = 0
        public var candidates = 0
        public var alerts = 0
        /// New flows not tracked because the flow table was full.
        public var untrackedFlows = 0

        public init() {}

        init(_ packets: Int, _ bytes: Int, _ undecodable: Int, _ cycles: UInt64, _ scans: Int, _ candidates: Int,
             _ alerts: Int, _ untrackedFlows: Int) {
            (self.packets, self.bytes, self.undecodable, self.cycles) = (packets, bytes, undecodable, cycles)
            (self.scans, self.candidates, self.alerts, self.untrackedFlows) = (scans, candidates, alerts, untrackedFlows)
        }

        public static func + (a: Counters, b: Counters) -> Counters {
            Counters(a.packets + b.packets, a.bytes + b.bytes, a.undecodable + b.undecodable, a.cycles + b.cycles, a.scans + b.scans,
                     a.candidates + b.candidates, a.alerts + b.alerts, a.untrackedFlows + b.untrackedFlows)
        }
    }

    /// `profileRules`: count how often each rule is a candidate (`candidateCounts`).
    public init(engine: DetectionEngine, flowCapacity: Int = 1 << 16, profileRules: Bool = false) {
        self.engine = engine
        flows = FlowTable(capacity: flowCapacity, flowbits: engine.flowbitCount)
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
    }

    /// Inspects one Ethernet frame, trace packet `number`; returns its parsed headers
    /// (nil: not IPv4 or undecodable, counted).
    @inline(__always) @discardableResult
    public func inspect(_ frame: UnsafeMutableRawBufferPointer, number: Int, timestampNanoseconds: UInt64) -> ParsedFrame? {
        let start = cflex_rdtsc()
        defer { counts.cycles &+= cflex_rdtsc() &- start }
        counts.packets &+= 1
        counts.bytes &+= frame.count
        guard let parsed = try? ParsedFrame(parsing: frame), parsed.layers.contains(.ipv4) else {
            counts.undecodable &+= 1
            return nil
        }
        let isTCP = parsed.layers.contains(.tcp)
        var senderIsServer = false
        if parsed.hasPorts {
            let sourceServes = engine.isServicePort(parsed.sourcePort, tcp: isTCP)
            let destinationServes = engine.isServicePort(parsed.destinationPort, tcp: isTCP)
            senderIsServer = sourceServes != destinationServes ? sourceServes
                : parsed.sourcePort < 1024 && parsed.destinationPort >= 1024
        }
        let flow = flows.update(parsed, senderIsServer: senderIsServer)

        // Candidates: each group's automaton over the payload, plus its content-less rules.
        stamp &+= 1
        if stamp == 0 {
            checked.update(repeating: 0, count: max(engine.rules.count, 1))
            stamp = 1
        }
        candidateCount = 0
        // ICMP rules look past the 8-byte ICMP header, as Snort's do.
        let skip = parsed.ipProtocol == 1 && !parsed.layers.contains(.fragment) ? 8 : 0
        let payloadStart = min(Int(parsed.payloadOffset) + skip, frame.count)
        let payload = UnsafeRawBufferPointer(start: frame.baseAddress! + payloadStart,
                                             count: max(0, min(Int(parsed.payloadLength) - skip, frame.count - payloadStart)))
        if let table = engine.table(for: parsed) {
            for k in table.destination.range(parsed.destinationPort) { collect(table.destination.ids[k], payload, parsed) }
            for k in table.source.range(parsed.sourcePort) { collect(table.source.ids[k], payload, parsed) }
        }
        let catchAll = engine.catchAllGroups(for: parsed)
        collect(catchAll.0, payload, parsed)
        collect(catchAll.1, payload, parsed)
        guard candidateCount > 0 else { return parsed }
        counts.candidates &+= candidateCount

        var context = PacketContext(frame: parsed, bytes: UnsafeRawPointer(frame.baseAddress!), payload: payload, flow: flow,
                                    scratch: scratch, variables: variables)
        // Snort's order of actions (pass, reject, alert, log): only the first group
        // with a match is output, so a matching pass rule silences the packet and a
        // reject match hides alert rules' events; log rules raise no alert, and
        // noalert rules only change flowbits.
        let firstAlert = alerts.count
        var passed = false, rejected = false
        for k in 0..<candidateCount {
            let r = candidates[k]
            let rule = engine.ruleStorage + Int(r)
            guard context.matches(rule), !rule.pointee.noAlert else { continue }
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
                                proto: parsed.ipProtocol, source: parsed.sourceAddress, destination: parsed.destinationAddress,
                                sourcePort: parsed.sourcePort, destinationPort: parsed.destinationPort))
        }
        if passed { alerts.removeSubrange(firstAlert...) }
        counts.alerts &+= alerts.count - firstAlert
        return parsed
    }

    @inline(__always)
    func collect(_ id: Int32, _ payload: UnsafeRawBufferPointer, _ frame: ParsedFrame) {
        guard id >= 0 else { return }
        let group = engine.groups[Int(id)]
        for r in group.alwaysRules { add(r) }
        if !group.sourceListedRules.isEmpty && AddressSet.find(frame.sourceAddress, in: group.sourceUnion) {
            for r in group.sourceListedRules { add(r) }
        }
        if !group.destinationListedRules.isEmpty && AddressSet.find(frame.destinationAddress, in: group.destinationUnion) {
            for r in group.destinationListedRules { add(r) }
        }
        guard payload.count > 0, group.matcher.patternCount > 0 else { return }
        counts.scans &+= 1
        group.patternRuleStart.withUnsafeBufferPointer { start in
            group.patternRules.withUnsafeBufferPointer { list in
                group.matcher.scan(payload) { p in
                    for k in Int(start[Int(p)])..<Int(start[Int(p) + 1]) { add(list[k]) }
                }
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
