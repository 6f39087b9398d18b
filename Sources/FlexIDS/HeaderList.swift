/// Snort's header list grammar, shared by addresses and ports: `any`, a leaf, `!X`,
/// `[X,Y,...]` (nested), `$VAR`. Flattened into leaves, each with its negation resolved
/// (`![a,!b]` is not-a and b). `any` inside a list is the leaf "any".
enum HeaderList {
    struct Leaf: Equatable {
        var text: Substring
        var negated: Bool
    }

    static func flatten(_ text: Substring, variables: RuleVariables, depth: Int = 0) throws(RuleError) -> [Leaf] {
        guard depth < 16 else { throw .malformed("variables nest too deeply (a loop?) at \(text)") }
        let t = text.trimmingWhitespace
        guard !t.isEmpty else { throw .malformed("empty address or port list") }
        if t.first == "!" {
            return try flatten(t.dropFirst(), variables: variables, depth: depth + 1).map { Leaf(text: $0.text, negated: !$0.negated) }
        }
        if t.first == "$" {
            let name = String(t.dropFirst())
            guard let value = variables[name] else { throw .undefinedVariable(name) }
            return try flatten(Substring(value), variables: variables, depth: depth + 1)
        }
        if t.first == "[" {
            guard t.last == "]" else { throw .malformed("unclosed list \(t)") }
            var out: [Leaf] = []
            for item in try splitTopLevel(t.dropFirst().dropLast()) {
                out += try flatten(item, variables: variables, depth: depth + 1)
            }
            return out
        }
        return [Leaf(text: t, negated: false)]
    }

    /// The leaves of `text` turned into values by `parse`, sorted into included and
    /// excluded ones; `any` is true for an `any` leaf or when only exclusions are named
    /// (`!x`: anything but x).
    static func sets<T>(_ text: Substring, variables: RuleVariables, parse: (Substring) throws(RuleError) -> T)
        throws(RuleError) -> (included: [T], excluded: [T], any: Bool) {
        var included: [T] = [], excluded: [T] = []
        var any = false
        for leaf in try flatten(text, variables: variables) {
            if leaf.text.count == 3 && leaf.text.lowercased() == "any" {  // any case, as Snort
                guard !leaf.negated else { throw .malformed("!any matches nothing") }
                any = true
                continue
            }
            let value = try parse(leaf.text)
            if leaf.negated { excluded.append(value) } else { included.append(value) }
        }
        return (included, excluded, any || (included.isEmpty && !excluded.isEmpty))
    }

    /// Splits at commas outside brackets.
    static func splitTopLevel(_ s: Substring) throws(RuleError) -> [Substring] {
        guard let parts = s.splitOutsideBrackets(UInt8(ascii: ",")) else { throw .malformed("unbalanced [ ] in \(s)") }
        return parts
    }
}

extension Substring {
    /// Without leading and trailing blanks (spaces, tabs, CR), found on the UTF-8 bytes.
    var trimmingWhitespace: Substring {
        let u = utf8
        var start = u.startIndex, end = u.endIndex
        func blank(_ b: UInt8) -> Bool { b == 0x20 || b == 0x09 || b == 0x0D }
        while start < end, blank(u[start]) { start = u.index(after: start) }
        while end > start, blank(u[u.index(before: end)]) { end = u.index(before: end) }
        return self[start..<end]
    }

    /// Splits at `separator` bytes outside double quotes (a backslash escapes the next
    /// byte); nil if a quote is left open.
    func splitOutsideQuotes(_ separator: UInt8) -> [Substring]? {
        var parts: [Substring] = []
        var quoted = false, escaped = false
        var start = startIndex
        var i = utf8.startIndex
        while i < utf8.endIndex {
            let b = utf8[i]
            if escaped {
                escaped = false
            } else if b == UInt8(ascii: "\\") {
                escaped = true
            } else if b == UInt8(ascii: "\"") {
                quoted.toggle()
            } else if b == separator && !quoted {
                parts.append(self[start..<i])
                start = utf8.index(after: i)
            }
            i = utf8.index(after: i)
        }
        guard !quoted else { return nil }
        parts.append(self[start...])
        return parts
    }

    /// Splits at `separator` bytes outside brackets (`[...]`), on the UTF-8 bytes;
    /// nil if the brackets do not balance.
    func splitOutsideBrackets(_ separator: UInt8) -> [Substring]? {
        var parts: [Substring] = []
        var level = 0
        var start = startIndex
        var i = utf8.startIndex
        while i < utf8.endIndex {
            switch utf8[i] {
            case UInt8(ascii: "["): level += 1
            case UInt8(ascii: "]"):
                level -= 1
                if level < 0 { return nil }
            case separator where level == 0:
                parts.append(self[start..<i])
                start = utf8.index(after: i)
            default: break
            }
            i = utf8.index(after: i)
        }
        guard level == 0 else { return nil }
        parts.append(self[start...])
        return parts
    }
}

/// A rule header's addresses: IPv4 and IPv6 blocks included and excluded, as ranges
/// of `IPAddressing`'s 128-bit form. A packet address matches when some included block
/// (or `any`) holds it and no excluded block does. Blocks are kept as sorted, merged
/// ranges, so a reputation list of thousands of addresses costs a binary search per
/// packet.
public struct AddressSet: Sendable, Equatable, CustomStringConvertible {
    var included: [ClosedRange<UInt128>] = []
    var excluded: [ClosedRange<UInt128>] = []
    public private(set) var isAny = false
    public private(set) var text: String

    public init(parsing text: Substring, variables: RuleVariables) throws(RuleError) {
        self.text = String(text)
        let (inc, exc, any) = try HeaderList.sets(text, variables: variables, parse: Self.block)
        included = Self.merged(inc)
        excluded = Self.merged(exc)
        isAny = any
    }

    /// How many addresses the included ranges cover (saturating).
    var span: UInt128 {
        included.reduce(0) { total, r in
            let (n, o) = (r.upperBound - r.lowerBound).addingReportingOverflow(1)
            let (sum, o2) = total.addingReportingOverflow(n)
            return o || o2 ? .max : sum
        }
    }

    /// `a.b.c.d[/n]` or an IPv6 address `[/n]`, as the range it covers.
    static func block(_ s: Substring) throws(RuleError) -> ClosedRange<UInt128> {
        let parts = s.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count <= 2, let address = IPAddressing.parse(parts[0]) else { throw .malformed("not an IPv4 or IPv6 address or block: \(s)") }
        let isIPv4 = !parts[0].contains(":")
        let width = isIPv4 ? 32 : 128
        var bits = width
        if parts.count == 2 {
            guard let b = Int(parts[1]), (0...width).contains(b) else { throw .malformed("bad prefix length in \(s)") }
            bits = b
        }
        // An IPv4 prefix keeps the 96 mapped bits fixed.
        let hostBits = width - bits
        let hostMask: UInt128 = hostBits == 0 ? 0 : hostBits >= 128 ? .max : (1 << UInt128(hostBits)) - 1
        let network = address & ~hostMask
        return network...(network | hostMask)
    }

    /// Sorted, with overlapping and adjacent ranges joined.
    static func merged(_ ranges: [ClosedRange<UInt128>]) -> [ClosedRange<UInt128>] {
        var out: [ClosedRange<UInt128>] = []
        for r in ranges.sorted(by: { $0.lowerBound < $1.lowerBound }) {
            if let last = out.last, r.lowerBound <= last.upperBound || r.lowerBound == last.upperBound &+ 1 {
                out[out.count - 1] = last.lowerBound...max(last.upperBound, r.upperBound)
            } else {
                out.append(r)
            }
        }
        return out
    }

    static func find(_ a: UInt128, in ranges: [ClosedRange<UInt128>]) -> Bool {
        var lo = 0, hi = ranges.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if ranges[mid].upperBound < a { lo = mid + 1 } else { hi = mid }
        }
        return lo < ranges.count && ranges[lo].contains(a)
    }

    public func contains(_ address: UInt128) -> Bool {
        (isAny || Self.find(address, in: included)) && (excluded.isEmpty || !Self.find(address, in: excluded))
    }

    public var description: String { text }
}

/// A rule header's ports: ranges included and excluded, like `AddressSet`.
public struct PortSet: Sendable, Equatable, CustomStringConvertible {
    var included: [ClosedRange<UInt16>] = []
    var excluded: [ClosedRange<UInt16>] = []
    public private(set) var isAny = false
    public private(set) var text: String

    public init(parsing text: Substring, variables: RuleVariables) throws(RuleError) {
        self.text = String(text)
        (included, excluded, isAny) = try HeaderList.sets(text, variables: variables, parse: Self.range)
        if included.contains(0...65535) { isAny = true }
    }

    /// `80`, `1024:`, `:1023`, `1:100`.
    static func range(_ s: Substring) throws(RuleError) -> ClosedRange<UInt16> {
        guard let colon = s.firstIndex(of: ":") else {
            guard let p = UInt16(s) else { throw .malformed("not a port: \(s)") }
            return p...p
        }
        let lo = s[..<colon], hi = s[s.index(after: colon)...]
        guard let l = lo.isEmpty ? 0 : UInt16(lo), let h = hi.isEmpty ? 65535 : UInt16(hi), l <= h else {
            throw .malformed("not a port range: \(s)")
        }
        return l...h
    }

    public func contains(_ port: UInt16) -> Bool {
        (isAny || included.contains { $0.contains(port) }) && !excluded.contains { $0.contains(port) }
    }

    /// The ports a rule names when it names a few (no exclusions, at most `limit`):
    /// what a port group is keyed by. nil for `any` and broad ranges.
    public func listedPorts(limit: Int = 64) -> [UInt16]? {
        guard !isAny, excluded.isEmpty else { return nil }
        var out: [UInt16] = []
        for r in included {
            guard out.count + r.count <= limit else { return nil }
            out += Array(r)
        }
        return Array(Set(out)).sorted()
    }

    public var description: String { text }
}
