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
    /// `urilen:`: the HTTP request URI's length test (no request, no match), on the
    /// raw URI or (`,norm`) the normalized one.
    public var uriLength: SizeTest?
    public var uriLengthNormalized = false
    /// `threshold:`: an event filter applied to this rule's alerts after detection.
    public var threshold: Threshold?
    /// `detection_filter:`: the rule raises alerts only once its matches from one host
    /// exceed `count` within `seconds` (kind `.detectionFilter`).
    public var detectionFilter: Threshold?
    /// Tests of IP, TCP and ICMP header fields (`ttl`, `tos`, `id`, `ip_proto`,
    /// `fragoffset`, `seq`, `ack`, `window`, `itype`, `icode`, `icmp_id`,
    /// `icmp_seq`), all of which must hold.
    public var headerTests: [HeaderTest] = []
    /// `fragbits:`: the IPv4 flags test (bits R 0x4, D 0x2, M 0x1).
    public var fragmentBits: FlagsTest?
    /// `sameip`: source and destination addresses are equal.
    public var sameIP = false
    /// `ipopts:`: the IPv4 header carries this option (or any).
    public var ipOption: IPOptionTest?
    /// `stream_size:`: the bytes the TCP session's sides have sent, by sequence numbers.
    public var streamSize: StreamSizeTest?
    /// `rpc:`: the payload is an ONC RPC call to this program (version, procedure).
    public var rpc: RPCCallTest?
    /// `flowbits:` operations in rule order: checks hold before detection; changes
    /// apply when the whole rule matched.
    public var flowbits: [Flowbits] = []
    /// `flowbits:noalert`: a match changes flowbits but raises no alert.
    public var noAlert = false
    /// `tag:`: Snort logs the packets that follow an alert (of its session or host) to
    /// its packet log. They are not alerts: flexids writes no packet log, so the
    /// option is read, checked and kept, and changes no alert.
    public var tag: Tag?
    /// Names of the `byte_extract` variables, in slot order.
    public var variableNames: [String] = []
    public var detection: [DetectionOption] = []
    public var location: RuleLocation

    /// Whether the rule reads the payload (contents, pcres, byte options, sizes of
    /// data): such rules are not evaluated on IP fragments, as in Snort.
    public var looksAtPayload: Bool { !detection.isEmpty || payloadSize != nil || uriLength != nil || rpc != nil }

    /// Whether the rule has a `base64_decode` (at most one, as Snort allows).
    var decodesBase64: Bool { detection.contains { if case .base64Decode = $0 { true } else { false } } }

    /// The content the multi-pattern automaton looks for: the one marked fast_pattern,
    /// else the longest non-negated content in a buffer Snort's fast-pattern matcher
    /// serves (not the method, cookie or status buffers); never one after base64_data,
    /// marked or not. nil: the rule has none and is
    /// checked for every packet of its port group.
    public var fastPattern: ContentMatch? {
        let contents = detection.compactMap { if case .content(let c) = $0, !c.negated, c.buffer != .base64Decoded { c } else { nil } }
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
    /// `only_stream`: only PDUs rebuilt by stream reassembly; `no_stream`: only packets
    /// as they came.
    public var onlyStream = false
    public var noStream = false
    public init() {}
}

/// A detection option, in rule order.
public enum DetectionOption: Sendable {
    case content(ContentMatch)
    case pcre(PCREMatch)
    /// `isdataat:[!]N[,relative]`: there is (or, negated, is not) a byte at offset N.
    case dataAt(offset: RuleNumber, relative: Bool, negated: Bool)
    /// `byte_test`: a number read from the buffer compared with a value.
    case byteTest(ByteTest)
    /// `byte_jump`: a number read from the buffer moves the cursor.
    case byteJump(ByteJump)
    /// `byte_extract`: a number read from the buffer goes into a variable that later
    /// options use as an offset, depth, distance, within or value.
    case byteExtract(ByteExtract)
    /// `byte_math`: a number read from the buffer, combined with a value, goes into a
    /// variable (the cursor stays).
    case byteMath(ByteMath)
    /// `file_data`: later contents and pcres without a buffer of their own look at the
    /// HTTP body, starting at its first byte.
    case fileData
    /// `base64_decode`: decodes base64 from the payload (or the cursor), as Snort 2.9's;
    /// fails only on data it cannot decode. `Base64Decoding` says how.
    case base64Decode(Base64Decode)
    /// `base64_data`: later contents and pcres without a buffer of their own look at what
    /// `base64_decode` decoded, from its first byte; fails if that is nothing.
    case base64Data
    /// `asn1`: a BER structure at an offset has one of the encodings the check names.
    case asn1(ASN1Check)
    /// `ftpbounce`: the FTP `PORT` argument at the cursor names an IPv4 address other than
    /// the packet's source.
    case ftpBounce
}

/// `base64_decode[:[bytes N][, offset N][, relative]]`.
public struct Base64Decode: Sendable, Equatable {
    /// How many bytes of the unfolded input to decode (nil: all).
    public var bytes: Int?
    /// Where to start: from the payload's start, or from the cursor when `relative`.
    public var offset = 0
    public var relative = false
}

/// `asn1:[bitstring_overflow][, double_overflow][, oversize_length N][, absolute_offset N|relative_offset N]`:
/// which encodings match (any of them), and where the BER data starts.
public struct ASN1Check: Sendable, Equatable {
    /// A primitive BIT STRING whose unused-bit count exceeds its bits.
    public var bitstringOverflow = false
    /// A primitive REAL in decimal (ASCII) form longer than 256 bytes.
    public var doubleOverflow = false
    /// Any element whose declared length is at least this (0: no length is), or a
    /// length too long to hold; nil: no length check.
    public var oversizeLength: UInt32?
    /// `print`: Snort prints the structure; alone it always holds.
    public var print = false
    /// From the payload's start, or (`relative_offset`) from the cursor.
    public var offset = 0
    public var relative = false
}

/// Which bytes of a packet a content or pcre is matched against. `raw` is the whole
/// payload; the HTTP buffers are ranges of it found by `HTTPBuffers`, except `httpURI`,
/// the request target as `URINormalizer` normalizes it (`httpRawURI` is it as sent).
public enum InspectionBuffer: UInt8, Sendable {
    case raw, httpMethod, httpURI, httpRawURI, httpHeader, httpCookie, httpClientBody, httpStatCode, httpStatMessage, fileData
    /// What the rule's `base64_decode` decoded (`base64_data`).
    case base64Decoded
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
    /// `detectionFilter` is the `detection_filter` option: alerts once the count is
    /// exceeded (never a `threshold` type).
    public enum Kind: String, Sendable { case limit, threshold, both, detectionFilter = "detection_filter" }
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
    public var offset: RuleNumber?
    public var depth: RuleNumber?
    public var distance: RuleNumber?
    public var within: RuleNumber?
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

/// A number in a rule option: written in the rule, or read from a `byte_extract`
/// variable (its slot in the rule) when the packet is inspected.
public enum RuleNumber: Sendable, Equatable, ExpressibleByIntegerLiteral {
    case constant(Int)
    case variable(Int)

    public init(integerLiteral n: Int) { self = .constant(n) }
}

/// How `byte_test`, `byte_jump` and `byte_extract` read a number: `count` bytes at
/// `offset` (from the buffer's start, or from the cursor when `relative`), as a
/// big- or little-endian binary number or as text in `base` 8, 10 or 16, then masked
/// with `bitmask` and shifted right by the mask's trailing zeros.
public struct ByteRead: Sendable, Equatable {
    public var count: Int
    public var offset: RuleNumber
    public var relative = false
    public var littleEndian = false
    /// Text numbers: their base (0: as the text's prefix says); nil for binary.
    public var base: Int?
    public var bitmask: UInt32?
}

/// `byte_test:bytes,[!]op,value,offset[,relative][,big|little][,string,hex|dec|oct][,bitmask m]`.
public struct ByteTest: Sendable, Equatable {
    public enum Operator: String, Sendable { case less = "<", greater = ">", lessOrEqual = "<=", greaterOrEqual = ">=", equal = "=", and = "&", xor = "^" }
    public var read: ByteRead
    public var op: Operator
    public var negated: Bool
    public var value: RuleNumber
}

/// `byte_jump:bytes,offset[,relative][,multiplier m][,big|little][,string,...][,align][,from_beginning|from_end][,post_offset n][,bitmask m]`.
public struct ByteJump: Sendable, Equatable {
    /// Where the jump starts: after the bytes read, or the buffer's start or end.
    public enum Origin: Sendable { case afterRead, beginning, end }
    public var read: ByteRead
    public var multiplier = 1
    /// Round the jump up to a multiple of 4.
    public var align = false
    public var from = Origin.afterRead
    public var postOffset: RuleNumber = 0
}

/// `byte_extract:bytes,offset,name[,relative][,multiplier m][,big|little][,string,...][,align 2|4][,bitmask m]`.
public struct ByteExtract: Sendable, Equatable {
    public var read: ByteRead
    /// The variable's slot in the rule (`SnortRule.variableNames`).
    public var slot: Int
    public var multiplier = 1
    /// Round the value up to a multiple of this (2 or 4); 0: no rounding.
    public var align = 0
}

/// `byte_math:bytes N, offset N, oper OP, rvalue V, result NAME[, relative][, endian big|little][, string hex|dec|oct][, bitmask M]`.
public struct ByteMath: Sendable, Equatable {
    public enum Operator: String, Sendable { case add = "+", subtract = "-", multiply = "*", divide = "/", shiftLeft = "<<", shiftRight = ">>" }
    public var read: ByteRead
    public var op: Operator
    public var rvalue: RuleNumber
    /// The result's variable slot (`SnortRule.variableNames`).
    public var slot: Int

    /// `value op rvalue` in 32 bits, as Snort's: nil (no match) when an addition or
    /// multiplication overflows, a subtraction goes below 0 or a division is by 0.
    public func apply(_ value: UInt32, _ r: UInt32) -> UInt32? {
        switch op {
        case .add: let (v, o) = value.addingReportingOverflow(r); return o ? nil : v
        case .subtract: return value < r ? nil : value - r
        case .multiply: let (v, o) = value.multipliedReportingOverflow(by: r); return o ? nil : v
        case .divide: return r == 0 ? nil : value / r
        // Shift counts are taken mod 32, as x86 (and so Snort's C) does.
        case .shiftLeft: return value << (r & 31)
        case .shiftRight: return value >> (r & 31)
        }
    }
}

/// `ipopts:rr|eol|nop|ts|sec|esec|lsrr|lsrre|ssrr|satid|any`.
public enum IPOptionTest: Sendable, Equatable {
    case any
    case code(UInt8)

    /// Option names and their codes.
    public static let codes: [String: UInt8] = [
        "eol": 0x00, "nop": 0x01, "rr": 0x07, "ts": 0x44, "sec": 0x82, "lsrr": 0x83, "lsrre": 0x84, "esec": 0x85,
        "satid": 0x88, "ssrr": 0x89,
    ]

    /// Whether IPv4 header options `options` hold the option, read as Snort's decoder
    /// reads them: NOP and EOL are one byte, others have a length of at least 2 within
    /// the header; an option after an EOL is not counted (so `eol` itself never is), and
    /// a malformed or cut option makes the header count none.
    public func matches(_ options: UnsafeRawBufferPointer) -> Bool {
        var i = 0, found = false, count = 0, ended = false
        while i < options.count && count < 40 {
            let code = options[i]
            var length = 1
            if code > 0x01 {
                guard i + 1 < options.count, options[i + 1] >= 2, i + Int(options[i + 1]) <= options.count else { return false }
                length = Int(options[i + 1])
            }
            if code == 0x00 { ended = true }
            if !ended {
                count += 1
                if self == .any || self == .code(code) { found = true }
            }
            i += length
        }
        return found
    }
}

/// `rpc:PROGRAM[,VERSION|*[,PROCEDURE|*]]`: an ONC RPC (RFC 5531) call, read as Snort
/// reads it: over TCP after the 4-byte record mark (at least 28 bytes), else from the
/// payload's start (at least 24): message type CALL (0), RPC version 2, then program,
/// version and procedure.
public struct RPCCallTest: Sendable, Equatable {
    public var program: UInt32
    public var version: UInt32?
    public var procedure: UInt32?

    public func matches(_ payload: UnsafeRawBufferPointer, tcp: Bool) -> Bool {
        let start = tcp ? 4 : 0
        guard payload.count >= start + 24 else { return false }
        func word(_ i: Int) -> UInt32 {
            let at = start + 4 * i
            return UInt32(payload[at]) << 24 | UInt32(payload[at + 1]) << 16 | UInt32(payload[at + 2]) << 8 | UInt32(payload[at + 3])
        }
        return word(1) == 0 && word(2) == 2 && word(3) == program
            && (version.map { word(4) == $0 } ?? true) && (procedure.map { word(5) == $0 } ?? true)
    }
}

/// `stream_size:client|server|both|either,OP,N`: the bytes a TCP session's client,
/// server, both or either have sent (next sequence number less the initial one).
public struct StreamSizeTest: Sendable, Equatable {
    public enum Side: String, Sendable { case client, server, both, either }
    public var side: Side
    public var test: NumberTest

    /// Whether the bytes the client and the server have sent pass the test.
    public func matches(client: UInt32, server: UInt32) -> Bool {
        switch side {
        case .client: test.matches(UInt64(client))
        case .server: test.matches(UInt64(server))
        case .both: test.matches(UInt64(client)) && test.matches(UInt64(server))
        case .either: test.matches(UInt64(client)) || test.matches(UInt64(server))
        }
    }
}

/// A test of one numeric header field.
public struct HeaderTest: Sendable, Equatable {
    public enum Field: String, Sendable {
        case ttl, tos, id, ipProto = "ip_proto", fragOffset = "fragoffset", seq, ack, window
        case icmpType = "itype", icmpCode = "icode", icmpID = "icmp_id", icmpSeq = "icmp_seq"
    }
    public var field: Field
    public var test: NumberTest
}

/// A comparison of a number: `N`, `!N`, `<N`, `>N`, `<=N`, `>=N`, or a range
/// (`A<>B` exclusive, `A-B` inclusive).
public struct NumberTest: Sendable, Equatable {
    public enum Comparison: Sendable, Equatable { case equal, notEqual, less, greater, lessOrEqual, greaterOrEqual, exclusiveRange, inclusiveRange }
    public var comparison: Comparison
    public var low: UInt64
    public var high: UInt64 = 0

    public func matches(_ n: UInt64) -> Bool {
        switch comparison {
        case .equal: return n == low
        case .notEqual: return n != low
        case .less: return n < low
        case .greater: return n > low
        case .lessOrEqual: return n <= low
        case .greaterOrEqual: return n >= low
        case .exclusiveRange: return n > low && n < high
        case .inclusiveRange: return n >= low && n <= high
        }
    }
}

/// One `flowbits:` operation. `bits` are the state bits it names, resolved by the
/// engine (`DetectionEngine.flowbitCount` bits per flow).
public struct Flowbits: Sendable, Equatable {
    public enum Operation: String, Sendable { case set, setx, unset, toggle, isset, isnotset, reset }
    public var operation: Operation
    /// Bit names (empty: `all`/`any` of `group`, or every bit for `reset`).
    public var names: [String]
    /// Checks: all named bits (`a&b`, `all`) rather than any (`a|b`, `any`).
    public var requiresAll = true
    public var group: String?
    /// The bits it tests or changes, resolved by the engine.
    public var bits: [Int] = []
    /// `setx`: the other bits of its group, which it clears.
    public var groupBits: [Int] = []
}

/// `tag:session|host,COUNT,packets|seconds|bytes[,src|dst]`.
public struct Tag: Sendable, Equatable {
    public enum Kind: String, Sendable { case session, host }
    public enum Metric: String, Sendable { case packets, seconds, bytes }
    public var kind: Kind
    /// 0: the whole session (`tag:session`).
    public var count: Int
    public var metric: Metric
}
