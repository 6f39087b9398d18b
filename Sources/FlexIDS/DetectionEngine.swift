import FlexWire

/// The compiled form of a rule set that instances share: the rules, their port groups
/// and the port lookup tables. Immutable after `init`.
public final class DetectionEngine: @unchecked Sendable {
    public let rules: [SnortRule]
    /// The rules again, in memory confirmation reads in place (no copy of the rule
    /// per candidate).
    let ruleStorage: UnsafeMutablePointer<SnortRule>
    public let groups: [RuleGroup]
    let tcp: PortGroupTable
    let udp: PortGroupTable
    let icmpGroup: Int32
    let ipGroup: Int32

    /// At most this many ports make a rule join per-port groups; more go to any-any.
    public static let listedPortLimit = 1024
    /// A port list at least this long (`$HTTP_PORTS`) keeps one group of its own, which
    /// every port in it shares; shorter lists merge into each port's own group.
    public static let sharedListMinimum = 8

    /// Flowbits every flow carries (the distinct bit names of the rules' `flowbits`).
    public let flowbitCount: Int

    /// Whether packets with a wrong IPv4, TCP, UDP or ICMP checksum are left
    /// uninspected (and counted): Snort's `checksum_mode`, `all` by default.
    public enum ChecksumMode: String, Sendable, CaseIterable {
        case all, none
    }

    public let checksums: ChecksumMode

    /// The matcher the groups were built with (`auto` resolved).
    public let matcher: MatcherChoice

    /// Whether instances reassemble the client side of TCP sessions and inspect each
    /// PDU whole too (`StreamReassembler`; Snort's stream5 default).
    public let reassemblesStreams: Bool

    /// `matcherCache`: where compiled Hyperscan databases are kept between runs (nil:
    /// compile every time).
    public init(rules: [SnortRule], checksums: ChecksumMode = .all, matcher: MatcherChoice = .auto, streams: Bool = true,
                matcherCache: HyperscanCache? = nil) {
        self.checksums = checksums
        reassemblesStreams = streams
        let matcher = matcher == .auto ? (HyperscanDatabase.isAvailable ? .hyperscan : .dfa) : matcher
        self.matcher = matcher
        var rules = rules
        flowbitCount = Self.resolveFlowbits(&rules)
        self.rules = rules
        ruleStorage = .allocate(capacity: max(rules.count, 1))
        ruleStorage.initialize(from: rules, count: rules.count)
        struct Side: Hashable { var proto: SnortRule.TransportProtocol; var kind: RuleGroup.Kind }
        struct PortList: Hashable { var side: Side; var ports: [UInt16] }
        var lists: [PortList: (name: String, rules: [Int32])] = [:]
        var anyRules: [SnortRule.TransportProtocol: [Int32]] = [:]
        func add(_ proto: SnortRule.TransportProtocol, _ kind: RuleGroup.Kind, _ ports: [UInt16], _ text: String, _ rule: Int) {
            lists[PortList(side: Side(proto: proto, kind: kind), ports: ports), default: (text, [])].rules.append(Int32(rule))
        }
        for (i, r) in rules.enumerated() {
            switch r.proto {
            case .icmp, .ip: anyRules[r.proto, default: []].append(Int32(i))
            case .tcp, .udp:
                if let ports = r.destinationPorts.listedPorts(limit: Self.listedPortLimit) {
                    add(r.proto, .destination, ports, r.destinationPorts.text, i)
                    if r.bidirectional { add(r.proto, .source, ports, r.destinationPorts.text, i) }
                } else if let ports = r.sourcePorts.listedPorts(limit: Self.listedPortLimit) {
                    add(r.proto, .source, ports, r.sourcePorts.text, i)
                    if r.bidirectional { add(r.proto, .destination, ports, r.sourcePorts.text, i) }
                } else {
                    anyRules[r.proto, default: []].append(Int32(i))
                }
            }
        }
        var groups: [RuleGroup] = []
        var tcp = PortGroupTable(), udp = PortGroupTable()
        var icmpGroup: Int32 = -1, ipGroup: Int32 = -1
        var perPort: [Side: [UInt16: [Int32]]] = [:]
        // Long lists: one shared group each.
        func order(_ l: PortList) -> (String, String, Int, UInt16) { (l.side.proto.rawValue, l.side.kind.rawValue, l.ports.count, l.ports[0]) }
        let ordered = lists.sorted { order($0.key) != order($1.key) ? order($0.key) < order($1.key) : $0.key.ports.lexicographicallyPrecedes($1.key.ports) }
        for (list, value) in ordered where list.ports.count >= Self.sharedListMinimum {
            let id = Int32(groups.count)
            groups.append(RuleGroup(proto: list.side.proto, kind: list.side.kind, ports: list.ports, label: value.name, rules: value.rules, all: rules, matcher: matcher, cache: matcherCache))
            for p in list.ports { perPort[list.side, default: [:]][p, default: []].append(id) }
        }
        // Short lists: merged per port; ports with the same merged rules share a group.
        var extras: [Side: [UInt16: Set<Int32>]] = [:]
        for (list, value) in ordered where list.ports.count < Self.sharedListMinimum {
            for p in list.ports { extras[list.side, default: [:]][p, default: []].formUnion(value.rules) }
        }
        for side in extras.keys.sorted(by: { ($0.proto.rawValue, $0.kind.rawValue) < ($1.proto.rawValue, $1.kind.rawValue) }) {
            var portsByRules: [[Int32]: [UInt16]] = [:]
            for (port, set) in extras[side]! { portsByRules[set.sorted(), default: []].append(port) }
            for (list, ports) in portsByRules.map({ ($0.key, $0.value.sorted()) }).sorted(by: { $0.1[0] < $1.1[0] }) {
                let id = Int32(groups.count)
                groups.append(RuleGroup(proto: side.proto, kind: side.kind, ports: ports, label: nil, rules: list, all: rules, matcher: matcher, cache: matcherCache))
                for p in ports { perPort[side, default: [:]][p, default: []].append(id) }
            }
        }
        for proto in [SnortRule.TransportProtocol.tcp, .udp, .icmp, .ip] {
            guard let list = anyRules[proto] else { continue }
            let id = Int32(groups.count)
            groups.append(RuleGroup(proto: proto, kind: .any, ports: [], label: nil, rules: list, all: rules, matcher: matcher, cache: matcherCache))
            switch proto {
            case .tcp: tcp.any = id
            case .udp: udp.any = id
            case .icmp: icmpGroup = id
            case .ip: ipGroup = id
            }
        }
        for (side, ports) in perPort {
            let table = PortGroupTable.Side(ports)
            switch (side.proto, side.kind) {
            case (.tcp, .destination): tcp.destination = table
            case (.tcp, .source): tcp.source = table
            case (.udp, .destination): udp.destination = table
            case (.udp, .source): udp.source = table
            default: break
            }
        }
        self.groups = groups
        (self.tcp, self.udp, self.icmpGroup, self.ipGroup) = (tcp, udp, icmpGroup, ipGroup)
    }

    deinit {
        ruleStorage.deinitialize(count: rules.count)
        ruleStorage.deallocate()
    }

    /// The port-group tables of the frame's transport (nil: neither TCP nor UDP).
    @inline(__always)
    func table(for frame: ParsedFrame) -> PortGroupTable? {
        frame.layers.contains(.tcp) ? tcp : frame.layers.contains(.udp) ? udp : nil
    }

    /// The catch-all groups a frame checks after its port groups: its protocol's any-any
    /// group and the `ip` group (`-1`: none).
    @inline(__always)
    func catchAllGroups(for frame: ParsedFrame) -> (Int32, Int32) {
        if frame.layers.contains(.tcp) { return (tcp.any, ipGroup) }
        if frame.layers.contains(.udp) { return (udp.any, ipGroup) }
        return (frame.isICMP ? icmpGroup : -1, ipGroup)
    }

    /// Whether `port` keys a group of the frame's protocol: a service port.
    func isServicePort(_ port: UInt16, tcp isTCP: Bool) -> Bool {
        isTCP ? tcp.keys(port) : udp.keys(port)
    }

    /// The flow group of a packet: its protocol and the service ports among its two
    /// ports (0 for a port no group is keyed by), lower first. Both directions of a flow
    /// have the same flow group, and it fixes every port group the flow's packets check.
    public func flowGroup(of frame: ParsedFrame) -> FlowGroup {
        guard frame.hasPorts else { return FlowGroup(proto: frame.ipProtocol, low: 0, high: 0) }
        let isTCP = frame.layers.contains(.tcp)
        let a = isServicePort(frame.sourcePort, tcp: isTCP) ? frame.sourcePort : 0
        let b = isServicePort(frame.destinationPort, tcp: isTCP) ? frame.destinationPort : 0
        return FlowGroup(proto: frame.ipProtocol, low: min(a, b), high: max(a, b))
    }

    /// The port groups a flow group's packets check, in either direction, by name.
    public func groupNames(of flowGroup: FlowGroup) -> [String] {
        let table: PortGroupTable? = flowGroup.proto == 6 ? tcp : flowGroup.proto == 17 ? udp : nil
        var ids: [Int32] = []
        if let table {
            for p in [flowGroup.low, flowGroup.high] where p != 0 {
                ids += table.destination.groups(p) + table.source.groups(p)
            }
            ids.append(table.any)
        } else if flowGroup.proto == 1 {
            ids.append(icmpGroup)
        }
        ids.append(ipGroup)
        var seen = Set<Int32>()
        return ids.filter { $0 >= 0 && seen.insert($0).inserted }.map { groups[Int($0)].name }
    }

    /// Bytes of all groups' automata and rule lists.
    public var memoryFootprint: Int { groups.reduce(0) { $0 + $1.memoryFootprint } }
}

/// A class of traffic that checks the same port groups (thesis: a flow group): the IP
/// protocol and the service ports of the flow, lower first (0: a port no group keys).
public struct FlowGroup: Hashable, Sendable, Codable, Comparable, CustomStringConvertible {
    public var proto: UInt8
    public var low: UInt16
    public var high: UInt16

    public init(proto: UInt8, low: UInt16, high: UInt16) {
        self.proto = proto
        self.low = low
        self.high = high
    }

    public static func < (a: FlowGroup, b: FlowGroup) -> Bool { (a.proto, a.low, a.high) < (b.proto, b.low, b.high) }

    public var protocolName: String { proto == 6 ? "tcp" : proto == 17 ? "udp" : proto == 1 ? "icmp" : "ip\(proto)" }

    public var description: String {
        switch (low, high) {
        case (0, 0): return "\(protocolName) other"
        case (0, let p): return "\(protocolName) \(p)"
        default: return "\(protocolName) \(low)+\(high)"
        }
    }
}

extension DetectionEngine {
    /// Numbers the flowbit names of `rules` and fills in each operation's bits: named
    /// ones, a group's (a bit joins the groups it is set, setx'ed or toggled with), or
    /// all of them (`reset` without a group). Returns how many bits there are.
    static func resolveFlowbits(_ rules: inout [SnortRule]) -> Int {
        var numbers: [String: Int] = [:]
        var groups: [String: Set<Int>] = [:]
        func number(_ name: String) -> Int {
            if let n = numbers[name] { return n }
            numbers[name] = numbers.count
            return numbers.count - 1
        }
        for rule in rules {
            for f in rule.flowbits {
                let bits = f.names.map(number)
                if let g = f.group, [.set, .setx, .toggle].contains(f.operation) { groups[g, default: []].formUnion(bits) }
            }
        }
        for r in rules.indices where !rules[r].flowbits.isEmpty {
            for k in rules[r].flowbits.indices {
                var f = rules[r].flowbits[k]
                let group = f.group.map { (groups[$0] ?? []).sorted() } ?? []
                if !f.names.isEmpty {
                    f.bits = f.names.map { numbers[$0]! }
                } else {
                    f.bits = f.group != nil ? group : Array(0..<numbers.count)
                }
                if f.operation == .setx { f.groupBits = group }
                rules[r].flowbits[k] = f
            }
        }
        return numbers.count
    }
}
