import CPCRE2

/// Parses one Snort 2.9 rule: `action proto src sport -> dst dport (options)`. Options
/// outside what `SnortRule` models throw `.unsupported`, so the caller skips the rule and
/// says why; nothing is silently half-understood.
public enum RuleParser {
    /// Options that only label a rule; accepted and ignored.
    static let informational: Set<Substring> = ["metadata", "target"]

    public static func parse(_ text: Substring, at location: RuleLocation, variables: RuleVariables) throws(RuleError) -> SnortRule {
        let body = text.trimmingWhitespace
        guard let open = body.firstIndex(of: "("), body.last == ")" else {
            throw .malformed("a rule is `action proto src sport -> dst dport (options)`")
        }
        let header = body[..<open].split(whereSeparator: { $0 == " " || $0 == "\t" })
        guard header.count == 7 else {
            throw .malformed("the header needs 7 fields (action proto src sport dir dst dport), found \(header.count)")
        }
        guard let action = SnortRule.Action(rawValue: String(header[0])) else { throw .malformed("unknown action \(header[0])") }
        guard let proto = SnortRule.TransportProtocol(rawValue: String(header[1])) else { throw .malformed("unknown protocol \(header[1])") }
        guard header[4] == "->" || header[4] == "<>" else { throw .malformed("direction must be -> or <>, not \(header[4])") }
        var rule = SnortRule(
            action: action, proto: proto,
            source: try AddressSet(parsing: header[2], variables: variables),
            sourcePorts: try PortSet(parsing: header[3], variables: variables),
            bidirectional: header[4] == "<>",
            destination: try AddressSet(parsing: header[5], variables: variables),
            destinationPorts: try PortSet(parsing: header[6], variables: variables),
            location: location)
        for option in try splitOptions(body[body.index(after: open)..<body.index(before: body.endIndex)]) {
            try apply(option, to: &rule)
        }
        guard rule.sid > 0 else { throw .malformed("no sid") }
        return rule
    }

    /// Splits at `;` not escaped by a backslash. Like Snort, quotes do not protect a
    /// `;` (rules write `|3b|` or `\;`), so a stray quote inside a pcre is harmless.
    static func splitOptions(_ s: Substring) throws(RuleError) -> [Substring] {
        var out: [Substring] = []
        var start = s.startIndex
        var i = s.startIndex
        while i < s.endIndex {
            if s[i] == "\\" {
                i = s.index(after: i)
            } else if s[i] == ";" {
                out.append(s[start..<i].trimmingWhitespace)
                start = s.index(after: i)
            }
            if i < s.endIndex { i = s.index(after: i) }
        }
        guard s[start...].trimmingWhitespace.isEmpty else { throw .malformed("the last option lacks its `;`") }
        return out.filter { !$0.isEmpty }
    }

    static func apply(_ option: Substring, to rule: inout SnortRule) throws(RuleError) {
        let colon = option.firstIndex(of: ":")
        let name = (colon.map { option[..<$0] } ?? option).trimmingWhitespace
        let value = colon.map { option[option.index(after: $0)...].trimmingWhitespace } ?? ""
        func number<T: FixedWidthInteger>(_: T.Type = T.self) throws(RuleError) -> T {
            guard let n = T(value) else { throw .malformed("\(name) needs a number, not \"\(value)\"") }
            return n
        }
        func modifyLastContent(_ change: (inout ContentMatch) throws(RuleError) -> Void) throws(RuleError) {
            guard let i = rule.detection.lastIndex(where: { if case .content = $0 { true } else { false } }),
                  case .content(var c) = rule.detection[i] else { throw .malformed("\(name) without a content before it") }
            try change(&c)
            if let depth = c.depth, depth < c.bytes.count { throw .malformed("depth \(depth) is shorter than the content") }
            rule.detection[i] = .content(c)
        }
        switch name {
        case "msg": rule.message = try unquote(value)
        case "sid": rule.sid = try number()
        case "rev": rule.revision = try number()
        case "gid": rule.generator = try number()
        case "priority": rule.priority = try number()
        case "classtype": rule.classtype = String(value)
        case "reference": rule.references.append(String(value))
        case "content": rule.detection.append(.content(try content(value)))
        case "nocase": try modifyLastContent { $0.nocase = true }
        case "rawbytes": try modifyLastContent { _ in }  // we match raw bytes anyway
        case "offset": let n: Int = try number(); try modifyLastContent { $0.offset = n }
        case "depth": let n: Int = try number(); try modifyLastContent { $0.depth = n }
        case "distance": let n: Int = try number(); try modifyLastContent { $0.distance = n }
        case "within": let n: Int = try number(); try modifyLastContent { $0.within = n }
        case "fast_pattern":
            try modifyLastContent { $0.fastPattern = value == "only" ? .only : .chosen }
        case "pcre": rule.detection.append(.pcre(try pcre(value)))
        case "flow": rule.flow = try flow(value)
        default:
            guard informational.contains(name) else { throw .unsupported(String(name)) }
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
    /// buffer flags (U, P, H, D, M, C, K, S, Y, I) are not implemented.
    static func pcre(_ v: Substring) throws(RuleError) -> PCREMatch {
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
            default: throw .unsupported("pcre flag \(f)")
            }
        }
        return PCREMatch(source: String(quoted), negated: negated, relative: relative,
                         pattern: try CompiledPattern(pattern, options: options))
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
            default: throw .unsupported("flow:\(word)")
            }
        }
        return f
    }
}
