/// Snort's rule grouping by port (thesis 5.3): a rule whose destination ports are listed
/// (at most `DetectionEngine.listedPortLimit` of them) goes to the destination side of
/// those ports; otherwise, if its source ports are listed, to their source side;
/// otherwise to its protocol's any-any group. A bidirectional rule (`<>`) also goes to
/// the opposite side. ICMP rules form one group, and `ip` rules one that every IPv4
/// packet checks.
///
/// As Snort merges port objects, a long port list (`$HTTP_PORTS`) is one group that all
/// its ports share, and each port's rules from short lists merge into one group of that
/// port. A TCP or UDP packet checks the destination-side groups of its destination
/// port, the source-side groups of its source port, its protocol's any-any group and
/// the `ip` group. Each group compiles its rules' fast patterns into one Hyperscan
/// database (`HyperscanDatabase`) or, without Hyperscan, one `MultiPatternMatcher`;
/// rules without a content are checked on every packet of the group.
public final class RuleGroup: @unchecked Sendable {
    public enum Kind: String, Sendable { case destination = "dst", source = "src", any }
    public let proto: SnortRule.TransportProtocol
    public let kind: Kind
    /// The ports that select this group (ports with the same rules share one).
    public let ports: [UInt16]
    /// Indices into the engine's rules.
    public let rules: [Int32]
    /// The fast patterns' matcher: exactly one of the two is set when the group has
    /// patterns, neither when it has none.
    let database: HyperscanDatabase?
    let automaton: MultiPatternMatcher?
    /// Distinct fast patterns (case folded).
    let patternCount: Int
    /// `patternRules[patternRuleStart[p] ..< patternRuleStart[p + 1]]`: rules with fast
    /// pattern `p`.
    let patternRuleStart: [Int32]
    let patternRules: [Int32]
    /// Rules without a fast pattern: candidates for every packet of the group...
    let alwaysRules: [Int32]
    /// ...except those that name source (destination) addresses, IP reputation lists
    /// mostly: candidates only when their list includes the packet's source
    /// (destination), one binary search per packet for all of them.
    let sourceListed: AddressIndex
    let destinationListed: AddressIndex

    /// The port list as rules wrote it (`$HTTP_PORTS`), for a shared list's group.
    public let label: String?

    /// `tcp dst 80`, `tcp dst $HTTP_PORTS (104 ports)`, `udp any`, `ip any`.
    public var name: String {
        guard kind != .any else { return "\(proto.rawValue) any" }
        let list = ports.count <= 3 ? ports.map(String.init).joined(separator: ",") : "\(ports[0]),\(ports[1]),... (\(ports.count) ports)"
        return "\(proto.rawValue) \(kind.rawValue) " + (label.map { "\($0) (\(ports.count) ports)" } ?? list)
    }

    init(proto: SnortRule.TransportProtocol, kind: Kind, ports: [UInt16], label: String?, rules: [Int32], all: [SnortRule],
         matcher: MatcherChoice, cache: HyperscanCache?) {
        self.label = label
        self.proto = proto
        self.kind = kind
        self.ports = ports
        self.rules = rules
        var patternIndex: [[UInt8]: Int] = [:]
        var patterns: [[UInt8]] = []
        var byPattern: [[Int32]] = []
        var always: [Int32] = [], bySource: [Int32] = [], byDestination: [Int32] = []
        for r in rules {
            let rule = all[Int(r)]
            guard let fp = rule.fastPattern else {
                // The side that names fewer addresses filters more packets out
                // (`$HOME_NET any -> [reputation list]`: the destination).
                let bySourceSide = !rule.source.isAny && (rule.destination.isAny || rule.source.span <= rule.destination.span)
                if !rule.bidirectional && bySourceSide {
                    bySource.append(r)
                } else if !rule.bidirectional && !rule.destination.isAny {
                    byDestination.append(r)
                } else {
                    always.append(r)
                }
                continue
            }
            let key = fp.bytes.map { MultiPatternMatcher.fold[Int($0)] }
            if let p = patternIndex[key] {
                byPattern[p].append(r)
            } else {
                patternIndex[key] = patterns.count
                patterns.append(key)
                byPattern.append([r])
            }
        }
        patternCount = patterns.count
        database = patterns.isEmpty || matcher == .dfa ? nil : HyperscanDatabase(patterns: patterns, cache: cache)
        automaton = patterns.isEmpty || database != nil ? nil : MultiPatternMatcher(patterns: patterns)
        var start: [Int32] = [0]
        for list in byPattern { start.append(start.last! + Int32(list.count)) }
        patternRuleStart = start
        patternRules = byPattern.flatMap { $0 }
        alwaysRules = always
        sourceListed = AddressIndex(bySource, bySource.map { all[Int($0)].source })
        destinationListed = AddressIndex(byDestination, byDestination.map { all[Int($0)].destination })
    }

    /// States of the group's automaton (0 with Hyperscan).
    public var stateCount: Int { automaton?.stateCount ?? 0 }

    /// Bytes of rule state a core touches to inspect with this group.
    public var memoryFootprint: Int {
        (database?.memoryFootprint ?? 0) + (automaton?.memoryFootprint ?? 0) + (patternRules.count + alwaysRules.count) * 4
            + sourceListed.memoryFootprint + destinationListed.memoryFootprint
    }
}

/// The port-group lookup tables of one transport: which groups a port selects, per
/// side, and the protocol's any-any group (`-1`: none).
struct PortGroupTable {
    /// Port -> group ids, flat: `ids[start[p] ..< start[p + 1]]`.
    struct Side {
        var start: [Int32]
        var ids: [Int32]

        init(_ groups: [UInt16: [Int32]] = [:]) {
            start = [Int32](repeating: 0, count: 65537)
            ids = []
            for p in 0..<65536 {
                start[p] = Int32(ids.count)
                ids += groups[UInt16(p)] ?? []
            }
            start[65536] = Int32(ids.count)
        }

        @inline(__always) func range(_ port: UInt16) -> Range<Int> { Int(start[Int(port)])..<Int(start[Int(port) + 1]) }
        func groups(_ port: UInt16) -> [Int32] { Array(ids[range(port)]) }
    }

    var destination = Side()
    var source = Side()
    var any: Int32 = -1

    /// Whether some group is keyed by `port` (either side): a service port.
    func keys(_ port: UInt16) -> Bool { !destination.range(port).isEmpty || !source.range(port).isEmpty }
}
