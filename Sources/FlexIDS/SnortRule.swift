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
    /// `flags:`: the TCP flags test (only TCP packets pass one).
    public var tcpFlags: FlagsTest?
    /// `dsize:`: the payload size test.
    public var payloadSize: SizeTest?
    /// `urilen:`: the HTTP request URI's length test (no request, no match).
    public var uriLength: SizeTest?
    /// `threshold:`: an event filter applied to this rule's alerts after detection.
    public var threshold: Threshold?
    public var detection: [DetectionOption] = []
    public var location: RuleLocation

    /// The content the multi-pattern automaton looks for: the one marked fast_pattern,
    /// else the longest non-negated content in a buffer Snort's fast-pattern matcher
    /// serves (not the method, cookie or status buffers). nil: the rule has none and is
    /// checked for every packet of its port group.
    public var fastPattern: ContentMatch? {
        let contents = detection.compactMap { if case .content(let c) = $0, !c.negated { c } else { nil } }
        if let chosen = contents.first(where: { $0.fastPattern != .auto }) { return chosen }
        return contents.filter { ![.httpMethod, .httpCookie, .httpStatCode, .httpStatMessage].contains($0.buffer) }
            .max { $0.bytes.count < $1.bytes.count }
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
    /// `isdataat:[!]N[,relative]`: there is (or, negated, is not) a byte at offset N.
    case dataAt(offset: Int, relative: Bool, negated: Bool)
    /// `file_data`: later contents and pcres without a buffer of their own look at the
    /// HTTP body, starting at its first byte.
    case fileData
}

/// Which bytes of a packet a content or pcre is matched against. `raw` is the whole
/// payload; the HTTP buffers are ranges of it found by `HTTPBuffers` (not normalized:
/// `http_uri` is the raw request target, as `http_raw_uri`).
public enum InspectionBuffer: UInt8, Sendable {
    case raw, httpMethod, httpURI, httpHeader, httpCookie, httpClientBody, httpStatCode, httpStatMessage, fileData
}

/// `flags:[modifier]FLAGS[,IGNORED]`. `mask` holds the named flags; `ignored` the bits
/// the test disregards (`1`/`C` CWR, `2`/`E` ECE after the comma).
public struct FlagsTest: Sendable, Equatable {
    public enum Mode: Sendable, Equatable { case exactly, all, any, none }
    public var mode: Mode
    public var mask: UInt8
    public var ignored: UInt8

    public func matches(_ flags: UInt8) -> Bool {
        let f = flags & ~ignored
        switch mode {
        case .exactly: return f == mask
        case .all: return f & mask == mask
        case .any: return f & mask != 0
        case .none: return f & mask == 0
        }
    }
}

/// `dsize:N`, `dsize:>N`, `dsize:<N`, `dsize:A<>B` (inclusive, as Snort 2.9); also urilen.
public struct SizeTest: Sendable, Equatable {
    public enum Comparison: Sendable, Equatable { case equal, greater, less, between }
    public var comparison: Comparison
    public var low: Int
    public var high: Int

    public func matches(_ n: Int) -> Bool {
        switch comparison {
        case .equal: return n == low
        case .greater: return n > low
        case .less: return n < low
        case .between: return n >= low && n <= high
        }
    }
}

/// `threshold:type limit|threshold|both, track by_src|by_dst, count N, seconds S`:
/// Snort's event filter, applied to the alerts of a run in packet order.
public struct Threshold: Sendable, Equatable {
    public enum Kind: String, Sendable { case limit, threshold, both }
    public var kind: Kind
    public var trackBySource: Bool
    public var count: Int
    public var seconds: Int
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
    public var buffer = InspectionBuffer.raw

    /// Whether it is placed relative to the previous match (distance/within).
    public var isRelative: Bool { distance != nil || within != nil }
}

/// `pcre` with its Snort flags resolved: PCRE2 options, and R (relative to the
/// previous match). The compiled pattern is shared, immutable, JIT-compiled.
public struct PCREMatch: Sendable {
    public var source: String
    public var negated: Bool
    public var relative: Bool
    public var buffer: InspectionBuffer
    public var pattern: CompiledPattern
}
