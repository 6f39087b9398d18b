import CPCRE2

/// Parses one Snort 2.9 rule: `action proto src sport -> dst dport (options)`. Options
/// outside what `SnortRule` models throw `.unsupported`, so the caller skips the rule and
/// says why; nothing is silently half-understood.
public enum RuleParser {
    /// Options that only label a rule; accepted and ignored.
    static let informational: Set<Substring> = ["metadata", "target"]

    public static func parse(_ text: Substring, at location: RuleLocation, variables: RuleVariables,
                             syntax: RuleSyntax = .snort2) throws(RuleError) -> SnortRule {
        let body = text.trimmingWhitespace
        guard let open = body.firstIndex(of: "("), body.last == ")" else {
            throw .malformed("a rule is `action proto src sport -> dst dport (options)`")
        }
        var header = body[..<open].split(whereSeparator: { $0 == " " || $0 == "\t" })
        // Snort 3: `action service (options)` is the service between any hosts.
        if syntax == .snort3 && header.count == 2 { header += ["any", "any", "->", "any", "any"] }
        guard header.count == 7 else {
            throw .malformed("the header needs 7 fields (action proto src sport dir dst dport), found \(header.count)")
        }
        guard let action = SnortRule.Action(rawValue: String(header[0])) else { throw .malformed("unknown action \(header[0])") }
        // Snort in IDS (not inline) mode does not load drop and sdrop rules either.
        if action == .drop || action == .sdrop { throw .unsupported("action \(action.rawValue) (inline mode only)") }
        guard header[4] == "->" || header[4] == "<>" else { throw .malformed("direction must be -> or <>, not \(header[4])") }
        let service = syntax == .snort3 ? try ServiceRule.ports(of: header[1], variables: variables) : nil
        guard let proto = service?.0 ?? SnortRule.TransportProtocol(rawValue: String(header[1])) else {
            throw syntax == .snort3 ? .unsupported("service \(header[1])") : .malformed("unknown protocol \(header[1])")
        }
        var rule = SnortRule(
            action: action, proto: proto,
            source: try AddressSet(parsing: header[2], variables: variables),
            sourcePorts: try PortSet(parsing: header[3], variables: variables),
            bidirectional: header[4] == "<>",
            destination: try AddressSet(parsing: header[5], variables: variables),
            destinationPorts: try PortSet(parsing: header[6], variables: variables),
            location: location)
        var sticky = InspectionBuffer.raw
        for option in try splitOptions(body[body.index(after: open)..<body.index(before: body.endIndex)]) {
            try apply(option, to: &rule, sticky: &sticky, syntax: syntax)
        }
        if let (_, ports) = service, rule.sourcePorts.isAny && rule.destinationPorts.isAny {
            // The service's ports on the server's side.
            if rule.flow.direction == .toClient { rule.sourcePorts = ports } else { rule.destinationPorts = ports }
        }
        guard rule.sid > 0 else { throw .malformed("no sid") }
        // Snort never takes a content after base64_data for the fast pattern, marked or
        // not, and never evaluates one marked `only`: such a content is ignored (Talos
        // writes `content:"POST /x"; fast_pattern:only;` there).
        rule.detection.removeAll { if case .content(let c) = $0 { c.buffer == .base64Decoded && c.fastPattern == .only } else { false } }
        return rule
    }

    /// Splits at `;` not escaped by a backslash. Like Snort, quotes do not protect a
    /// `;` (rules write `|3b|` or `\;`), so a stray quote inside a pcre is harmless.
    static func splitOptions(_ s: Substring) throws(RuleError) -> [Substring] {
        var out: [Substring] = []
        let u = s.utf8
        var start = u.startIndex
        var i = u.startIndex
        while i < u.endIndex {
            if u[i] == UInt8(ascii: "\\") {
                i = u.index(after: i)
            } else if u[i] == UInt8(ascii: ";") {
                let option = s[start..<i].trimmingWhitespace
                if !option.isEmpty { out.append(option) }
                start = u.index(after: i)
            }
            if i < u.endIndex { i = u.index(after: i) }
        }
        guard s[start...].trimmingWhitespace.isEmpty else { throw .malformed("the last option lacks its `;`") }
        return out
    }

    /// Content modifiers that name an HTTP buffer (`http_raw_*` share the unnormalized
    /// one); in Snort 3, sticky buffers of the same names.
    static let bufferModifiers: [Substring: InspectionBuffer] = [
        "http_method": .httpMethod, "http_uri": .httpURI, "http_raw_uri": .httpRawURI,
        "http_header": .httpHeader, "http_raw_header": .httpHeader,
        "http_cookie": .httpCookie, "http_raw_cookie": .httpCookie, "http_client_body": .httpClientBody,
        "http_stat_code": .httpStatCode, "http_stat_msg": .httpStatMessage,
    ]

    /// Option families that read what a Snort preprocessor this tool does not have
    /// decodes (the skip says which).
    static let preprocessorOptions: [(prefix: String, preprocessor: String)] = [
        ("ssl_", "SSL"), ("dce_", "DCE/RPC 2"), ("sip_", "SIP"), ("modbus_", "Modbus"), ("dnp3_", "DNP3"), ("gtp_", "GTP"),
    ]

    /// Snort 3 options that only label a rule.
    static let informationalSnort3: Set<Substring> = ["service", "rem"]

    /// Applies one option. `sticky` is the buffer contents and pcres without one of
    /// their own look at: the packet, or after `file_data` the HTTP body; in Snort 3
    /// also whatever buffer keyword came last.
    static func apply(_ option: Substring, to rule: inout SnortRule, sticky: inout InspectionBuffer, syntax: RuleSyntax = .snort2) throws(RuleError) {
        let colon = option.firstIndex(of: ":")
        let name = (colon.map { option[..<$0] } ?? option).trimmingWhitespace
        let value = colon.map { option[option.index(after: $0)...].trimmingWhitespace } ?? ""
        func number<T: FixedWidthInteger>(_: T.Type = T.self) throws(RuleError) -> T {
            guard let n = T(value) else { throw .malformed("\(name) needs a number, not \"\(value)\"") }
            return n
        }
        /// A content modifier changes the latest content, even across a pcre between them,
        /// as Snort 2.9 does (ET Open has rules written so).
        func modifyLastContent(_ change: (inout ContentMatch) throws(RuleError) -> Void) throws(RuleError) {
            guard let i = rule.detection.lastIndex(where: { if case .content = $0 { true } else { false } }),
                  case .content(var c) = rule.detection[i] else { throw .malformed("\(name) without a content before it") }
            try change(&c)
            if case .constant(let depth)? = c.depth, depth < c.bytes.count { throw .malformed("depth \(depth) is shorter than the content") }
            if (c.offset != nil || c.depth != nil) && (c.distance != nil || c.within != nil) {
                throw .malformed("offset/depth and distance/within cannot modify the same content")
            }
            rule.detection[i] = .content(c)
        }
        /// Snort's bounds: positions within a packet, -65535...65535; lengths 1...65535.
        func position() throws(RuleError) -> Int {
            let n: Int = try number()
            guard (-65535...65535).contains(n) else { throw .malformed("\(name) \(n) is outside -65535...65535") }
            return n
        }
        /// A `byte_extract` variable named as the value, else the number `number` reads.
        func variable(else number: () throws(RuleError) -> Int) throws(RuleError) -> RuleNumber {
            guard isVariableName(value) else { return .constant(try number()) }
            guard let slot = rule.variableNames.firstIndex(of: String(value)) else {
                throw .malformed("\(name) names \(value), which no byte_extract before it defines")
            }
            return .variable(slot)
        }
        func length() throws(RuleError) -> Int {
            let n: Int = try number()
            guard (1...65535).contains(n) else { throw .malformed("\(name) \(n) is outside 1...65535") }
            return n
        }
        switch name {
        case "msg": rule.message = try unquote(value)
        case "sid": rule.sid = try number()
        case "rev": rule.revision = try number()
        case "gid": rule.generator = try number()
        case "priority": rule.priority = try number()
        case "classtype": rule.classtype = String(value)
        case "reference": rule.references.append(String(value))
        case "content" where syntax == .snort3:
            // `content:"text"[, modifier]...`: the modifiers, applied as Snort 2 options.
            guard let parts = value.splitOutsideQuotes(UInt8(ascii: ",")), let text = parts.first else { throw .malformed("content: unbalanced quotes") }
            var c = try content(text.trimmingWhitespace)
            c.buffer = sticky
            rule.detection.append(.content(c))
            for modifier in parts.dropFirst() {
                let words = modifier.trimmingWhitespace.split(separator: " ", maxSplits: 1)
                guard let key = words.first, ["nocase", "fast_pattern", "offset", "depth", "distance", "within"].contains(key) else {
                    throw .unsupported("content modifier \(modifier.trimmingWhitespace)")
                }
                try apply(words.count == 2 ? "\(key):\(words[1])" : key, to: &rule, sticky: &sticky, syntax: .snort2)
            }
        case "content", "uricontent":
            var c = try content(value)
            c.buffer = name == "uricontent" ? .httpURI : sticky
            rule.detection.append(.content(c))
        case _ where bufferModifiers[name] != nil:
            let buffer = bufferModifiers[name]!
            if syntax == .snort3 { sticky = buffer } else { try modifyLastContent { $0.buffer = buffer } }
        case "file_data", "js_data":
            sticky = .fileData
            rule.detection.append(.fileData)
        case "pkt_data", "raw_data": sticky = .raw
        case "base64_decode":
            guard !rule.decodesBase64 else { throw .malformed("at most one base64_decode per rule") }
            rule.detection.append(.base64Decode(try base64Decode(value)))
        case "base64_data":
            guard value.isEmpty else { throw .malformed("base64_data takes no arguments") }
            guard rule.decodesBase64 else { throw .malformed("base64_data needs a base64_decode before it") }
            sticky = .base64Decoded
            rule.detection.append(.base64Data)
        case "asn1": rule.detection.append(.asn1(try asn1(value)))
        case "ftpbounce":
            guard value.isEmpty else { throw .malformed("ftpbounce takes no arguments") }
            rule.detection.append(.ftpBounce)
        case "isdataat": rule.detection.append(try dataAt(value, variables: rule.variableNames))
        case "byte_test": rule.detection.append(.byteTest(try byteTest(value, variables: rule.variableNames)))
        case "byte_jump": rule.detection.append(.byteJump(try byteJump(value, variables: rule.variableNames)))
        case "byte_extract": rule.detection.append(.byteExtract(try byteExtract(value, variables: &rule.variableNames)))
        case "byte_math": rule.detection.append(.byteMath(try byteMath(value, variables: &rule.variableNames)))
        case "ipopts":
            guard rule.ipOption == nil else { throw .malformed("at most one ipopts per rule") }
            let name = value.lowercased()
            guard let test = name == "any" ? IPOptionTest.any : IPOptionTest.codes[name].map(IPOptionTest.code) else {
                throw .malformed("ipopts: unknown option \(value)")
            }
            rule.ipOption = test
        case "stream_size": rule.streamSize = try streamSize(value)
        case "rpc": rule.rpc = try rpc(value)
        case "replace":
            // Inline mode only: in IDS mode Snort reads the rule and replaces nothing.
            _ = try unquote(value)
            try modifyLastContent { _ in }
        case "flowbits":
            if value == "noalert" { rule.noAlert = true } else { rule.flowbits.append(try flowbits(value)) }
        case "detection_filter":
            guard rule.detectionFilter == nil else { throw .malformed("at most one detection_filter per rule") }
            rule.detectionFilter = try threshold("type detection_filter, " + value)
        case _ where HeaderTest.Field(rawValue: String(name)) != nil:
            rule.headerTests.append(try headerTest(HeaderTest.Field(rawValue: String(name))!, value))
        case "fragbits": rule.fragmentBits = try fragmentBits(value)
        case "sameip": rule.sameIP = true
        case "tag": rule.tag = try tag(value)
        case "flags": rule.tcpFlags = try flags(value)
        case "dsize": rule.payloadSize = try size(value, name: name)
        case "urilen":
            let parts = value.split(separator: ",").map { $0.trimmingWhitespace }
            rule.uriLength = try size(parts.first ?? "", name: name)
            switch parts.dropFirst().first {
            case nil, "raw"?: rule.uriLengthNormalized = false
            case "norm"?: rule.uriLengthNormalized = true
            case let other?: throw .malformed("urilen: \(other) is neither norm nor raw")
            }
        case "threshold": rule.threshold = try threshold(value)
        case "nocase": try modifyLastContent { $0.nocase = true }
        case "rawbytes": try modifyLastContent { _ in }  // we match raw bytes anyway
        case "offset": let n = try variable(else: position); try modifyLastContent { $0.offset = n }
        case "depth": let n = try variable(else: length); try modifyLastContent { $0.depth = n }
        case "distance": let n = try variable(else: position); try modifyLastContent { $0.distance = n }
        case "within": let n = try variable(else: length); try modifyLastContent { $0.within = n }
        case "fast_pattern":
            try modifyLastContent { $0.fastPattern = value == "only" ? .only : .chosen }
        case "pcre": rule.detection.append(.pcre(try pcre(value, defaultBuffer: sticky)))
        case "flow": rule.flow = try flow(value)
        default:
            if let (_, preprocessor) = preprocessorOptions.first(where: { name.hasPrefix($0.prefix) }) {
                throw .unsupported("\(name) (needs the \(preprocessor) preprocessor)")
            }
            guard informational.contains(name) || syntax == .snort3 && informationalSnort3.contains(name) else { throw .unsupported(String(name)) }
        }
    }

    /// A quoted string with `\"`, `\\`, `\;`, `\:` escapes.
    static func unquote(_ v: Substring) throws(RuleError) -> String {
        guard v.count >= 2, v.first == "\"", v.last == "\"" else { throw .malformed("expected a quoted string, not \(v)") }
        var out = ""
        var escaped = false
        for ch in v.dropFirst().dropLast() {
            if escaped { out.append(ch); escaped = false } else if ch == "\\" { escaped = true } else { out.append(ch) }
        }
        return out
    }

    /// `content:[!]"text|0d 0a|text"`.
    static func content(_ v: Substring) throws(RuleError) -> ContentMatch {
        let negated = v.first == "!"
        let text = try unquote(negated ? v.dropFirst().trimmingWhitespace : v)
        var bytes: [UInt8] = []
        var hex = false
        var nibble: UInt8? = nil
        for u in text.utf8 {
            if u == UInt8(ascii: "|") {
                guard nibble == nil else { throw .malformed("odd number of hex digits in content \(v)") }
                hex.toggle()
            } else if hex {
                if u == UInt8(ascii: " ") { continue }
                guard let d = hexValue(u) else { throw .malformed("bad hex digit in content \(v)") }
                if let high = nibble { bytes.append(high << 4 | d); nibble = nil } else { nibble = d }
            } else {
                bytes.append(u)
            }
        }
        guard !hex else { throw .malformed("unclosed | in content \(v)") }
        guard !bytes.isEmpty else { throw .malformed("empty content") }
        return ContentMatch(bytes: bytes, negated: negated)
    }

    static func hexValue(_ u: UInt8) -> UInt8? {
        switch u {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return u - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return u - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return u - UInt8(ascii: "A") + 10
        default: return nil
        }
    }

    /// `pcre:[!]"/pattern/flags"`. Snort's flags map to PCRE2 options; R makes it
    /// relative; B (raw bytes) and O (no match limits) change nothing here; the HTTP
    /// buffer flags pick the buffer (U and I the URI, H and D the header, P the client
    /// body, M the method, C and K the cookie, S the status code, Y the status message).
    static func pcre(_ v: Substring, defaultBuffer: InspectionBuffer) throws(RuleError) -> PCREMatch {
        let negated = v.first == "!"
        let quoted = negated ? v.dropFirst().trimmingWhitespace : v
        guard quoted.count >= 2, quoted.first == "\"", quoted.last == "\"" else { throw .malformed("pcre needs a quoted /pattern/") }
        let inner = quoted.dropFirst().dropLast()
        guard inner.first == "/", let close = inner.lastIndex(of: "/"), close != inner.startIndex else {
            throw .malformed("pcre must look like \"/pattern/flags\": \(v)")
        }
        let pattern = String(inner[inner.index(after: inner.startIndex)..<close])
        var options: UInt32 = 0
        var relative = false
        var buffer = defaultBuffer
        for f in inner[inner.index(after: close)...] {
            switch f {
            case "i": options |= UInt32(PCRE2_CASELESS)
            case "s": options |= UInt32(PCRE2_DOTALL)
            case "m": options |= UInt32(PCRE2_MULTILINE)
            case "x": options |= UInt32(PCRE2_EXTENDED)
            case "A": options |= UInt32(PCRE2_ANCHORED)
            case "E": options |= UInt32(PCRE2_DOLLAR_ENDONLY)
            case "G": options |= UInt32(PCRE2_UNGREEDY)
            case "R": relative = true
            case "B", "O": break
            case "U": buffer = .httpURI
            case "I": buffer = .httpRawURI
            case "H", "D": buffer = .httpHeader
            case "P": buffer = .httpClientBody
            case "M": buffer = .httpMethod
            case "C", "K": buffer = .httpCookie
            case "S": buffer = .httpStatCode
            case "Y": buffer = .httpStatMessage
            default: throw .unsupported("pcre flag \(f)")
            }
        }
        return PCREMatch(source: String(quoted), negated: negated, relative: relative, buffer: buffer,
                         pattern: try CompiledPattern(pattern, options: options))
    }

    /// `isdataat:[!]N[,relative][,rawbytes]` (N a number or a byte_extract variable).
    static func dataAt(_ v: Substring, variables: [String]) throws(RuleError) -> DetectionOption {
        let parts = v.split(separator: ",").map { $0.trimmingWhitespace }
        let negated = parts.first?.first == "!"
        guard let first = parts.first else { throw .malformed("isdataat needs [!]N[,relative]") }
        let n = try ruleNumber(negated ? first.dropFirst() : first, in: 0...65535, variables: variables, option: "isdataat")
        for p in parts.dropFirst() where p != "relative" && p != "rawbytes" { throw .unsupported("isdataat:\(p)") }
        return .dataAt(offset: n, relative: parts.contains("relative"), negated: negated)
    }

    /// `flags:[+*!]FSRPAUCE0[,12CE]`.
    static func flags(_ v: Substring) throws(RuleError) -> FlagsTest {
        let parts = v.split(separator: ",", maxSplits: 1).map { $0.trimmingWhitespace }
        guard let spec = parts.first else { throw .malformed("flags needs flag letters") }
        func bits(_ s: Substring) throws(RuleError) -> UInt8 {
            var b: UInt8 = 0
            for c in s {
                switch c {
                case "F": b |= 0x01
                case "S": b |= 0x02
                case "R": b |= 0x04
                case "P": b |= 0x08
                case "A": b |= 0x10
                case "U": b |= 0x20
                case "E", "2": b |= 0x40
                case "C", "1": b |= 0x80
                case "0": break
                default: throw .malformed("unknown TCP flag \(c) in flags:\(v)")
                }
            }
            return b
        }
        var letters = spec
        let mode = flagsMode(&letters)
        return FlagsTest(mode: mode, mask: try bits(letters), ignored: parts.count > 1 ? try bits(parts[1]) : 0)
    }

    /// Takes the modifier (`+` all, `*` any, `!` none; before or after the letters)
    /// off a `flags`/`fragbits` spec; none: exactly these.
    static func flagsMode(_ letters: inout Substring) -> FlagsTest.Mode {
        var mode = FlagsTest.Mode.exactly
        for (symbol, m) in [("+", FlagsTest.Mode.all), ("*", .any), ("!", .none)] as [(Character, FlagsTest.Mode)] {
            if letters.first == symbol { mode = m; letters = letters.dropFirst() } else if letters.last == symbol { mode = m; letters = letters.dropLast() }
        }
        return mode
    }

    /// `N`, `>N`, `<N`, `A<>B`.
    static func size(_ v: Substring, name: Substring) throws(RuleError) -> SizeTest {
        let t = v.trimmingWhitespace
        let bad = RuleError.malformed("\(name) needs N, >N, <N or A<>B, not \(v)")
        if let r = t.range(of: "<>") {
            guard let a = Int(t[..<r.lowerBound].trimmingWhitespace), let b = Int(t[r.upperBound...].trimmingWhitespace),
                  (0...65535).contains(a), (a...65535).contains(b) else { throw bad }
            return SizeTest(comparison: .between, low: a, high: b)
        }
        let comparison: SizeTest.Comparison = t.first == ">" ? .greater : t.first == "<" ? .less : .equal
        guard let n = Int((comparison == .equal ? t : t.dropFirst()).trimmingWhitespace), (0...65535).contains(n) else { throw bad }
        return SizeTest(comparison: comparison, low: n, high: n)
    }

    /// `type limit|threshold|both, track by_src|by_dst, count N, seconds S` (any order).
    static func threshold(_ v: Substring) throws(RuleError) -> Threshold {
        var kind: Threshold.Kind?, track: Bool?, count: Int?, seconds: Int?
        for part in v.split(separator: ",") {
            let words = part.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard words.count == 2 else { throw .malformed("threshold part \"\(part.trimmingWhitespace)\" is not `key value`") }
            switch words[0] {
            case "type": kind = Threshold.Kind(rawValue: String(words[1]))
            case "track": track = words[1] == "by_src" ? true : words[1] == "by_dst" ? false : nil
            case "count": count = Int(words[1])
            case "seconds": seconds = Int(words[1])
            default: throw .malformed("unknown threshold key \(words[0])")
            }
        }
        guard let kind, let track, let count, (1...1_000_000_000).contains(count), let seconds, (1...1_000_000_000).contains(seconds) else {
            throw .malformed("threshold needs type limit|threshold|both, track by_src|by_dst, count N and seconds S (1...10^9)")
        }
        return Threshold(kind: kind, trackBySource: track, count: count, seconds: seconds)
    }

    /// `flow:to_server,established` and friends.
    static func flow(_ v: Substring) throws(RuleError) -> FlowConstraint {
        var f = FlowConstraint()
        for word in v.split(separator: ",").map({ $0.trimmingWhitespace }) {
            switch word {
            case "to_server", "from_client": f.direction = .toServer
            case "to_client", "from_server": f.direction = .toClient
            case "established": f.established = true
            case "not_established": f.notEstablished = true
            case "stateless": break
            // No stream is reassembled here: every packet is one as it arrived.
            case "no_stream": f.noStream = true
            case "only_stream": f.onlyStream = true
            default: throw .unsupported("flow:\(word)")
            }
        }
        return f
    }
}
