/// One Snort 2.9 rule as this tool understands it: the header, the detection options in
/// rule order (content and pcre; relative ones refer to the previous match), flow
/// constraints, and the informational options alerts print.
public struct SnortRule: Sendable {
    public enum Action: String, Sendable { case alert, log, pass, drop, reject, sdrop }
    public enum TransportProtocol: String, Sendable { case tcp, udp, icmp, ip }

    public var action: Action
    public var proto: TransportProtocol
    public var source: AddressSet
    public var sourcePorts: PortSet
    /// `<>`: the rule matches either direction.
    public var bidirectional: Bool
    public var destination: AddressSet
    public var destinationPorts: PortSet

    public var message = ""
    public var sid: UInt32 = 0
    public var revision: UInt32 = 0
    public var generator: UInt32 = 1
    public var classtype: String?
    public var priority: Int?
    public var references: [String] = []
    public var flow = FlowConstraint()
    public var detection: [DetectionOption] = []
    public var location: RuleLocation

    /// The content the multi-pattern automaton looks for: the one marked fast_pattern,
    /// else the longest non-negated content (Snort's choice). nil: the rule has none and
    /// is checked for every packet of its port group.
    public var fastPattern: ContentMatch? {
        let contents = detection.compactMap { if case .content(let c) = $0, !c.negated { c } else { nil } }
        return contents.first { $0.fastPattern != .auto } ?? contents.max { $0.bytes.count < $1.bytes.count }
    }
}

/// `flow:` options: which side sent the packet and whether the TCP session is set up.
public struct FlowConstraint: Sendable, Equatable {
    public enum Direction: Sendable { case any, toServer, toClient }
    public var direction = Direction.any
    public var established = false
    public var notEstablished = false
    public init() {}
}

/// A detection option, in rule order.
public enum DetectionOption: Sendable {
    case content(ContentMatch)
    case pcre(PCREMatch)
}

/// `content` with its modifiers.
public struct ContentMatch: Sendable, Equatable {
    public enum FastPattern: Sendable, Equatable { case auto, chosen, only }
    public var bytes: [UInt8]
    public var negated = false
    public var nocase = false
    public var offset: Int?
    public var depth: Int?
    public var distance: Int?
    public var within: Int?
    public var fastPattern = FastPattern.auto

    /// Whether it is placed relative to the previous match (distance/within).
    public var isRelative: Bool { distance != nil || within != nil }
}

/// `pcre` with its Snort flags resolved: PCRE2 options, and R (relative to the
/// previous match). The compiled pattern is shared, immutable, JIT-compiled.
public struct PCREMatch: Sendable {
    public var source: String
    public var negated: Bool
    public var relative: Bool
    public var pattern: CompiledPattern
}
