/// The non-content options of Snort 2.9 rules: the byte options (`byte_test`,
/// `byte_jump`, `byte_extract`), `flowbits`, the header field tests, `base64_decode`
/// and `asn1`.
extension RuleParser {
    /// byte_extract variables a rule may define (Snort allows 2; rules seen use 1 or 2).
    static let maximumVariables = 8

    /// A number (decimal, or hex after `0x`) in `range`, or the name of a byte_extract
    /// variable defined before.
    static func ruleNumber(_ text: Substring, in range: ClosedRange<Int>, variables: [String], option: String) throws(RuleError) -> RuleNumber {
        let t = text.trimmingWhitespace
        if isVariableName(t) {
            guard let slot = variables.firstIndex(of: String(t)) else {
                throw .malformed("\(option) names \(t), which no byte_extract before it defines")
            }
            return .variable(slot)
        }
        guard let n = integer(t), range.contains(n) else { throw .malformed("\(option): \(t) is not a number in \(range)") }
        return .constant(n)
    }

    /// Decimal, `-`decimal, or `0x` hex.
    static func integer(_ t: Substring) -> Int? {
        if t.hasPrefix("0x") || t.hasPrefix("0X") { return Int(t.dropFirst(2), radix: 16) }
        return Int(t)
    }

    /// As C's strtoul with base 0 (how Snort reads byte_test values): `0x` hex, a
    /// leading `0` octal, else decimal.
    static func cInteger(_ t: Substring) -> Int? {
        if t.hasPrefix("0x") || t.hasPrefix("0X") { return Int(t.dropFirst(2), radix: 16) }
        if t.count > 1 && t.hasPrefix("0") { return Int(t.dropFirst(), radix: 8) }
        return Int(t)
    }

    /// Snort takes a token that does not start with a digit or `-` for a variable
    /// name (ET's are dotted: `SSL.Client_Hello.length`).
    static func isVariableName(_ t: Substring) -> Bool {
        guard let first = t.first else { return false }
        return !first.isNumber && first != "-" && first != "+" && !t.contains(where: { $0 == " " || $0 == "," || $0 == ";" })
    }

    /// The arguments after the positional ones: endianness, text base, relative,
    /// bitmask, and (returned, in order) the keyword arguments the caller handles.
    static func byteRead(count: Substring, offset: Substring, rest: ArraySlice<Substring>, variables: [String],
                         option: String) throws(RuleError) -> (ByteRead, [Substring]) {
        var read = ByteRead(count: 0, offset: try ruleNumber(offset, in: -65535...65535, variables: variables, option: option))
        var text = false
        var others: [Substring] = []
        for argument in rest {
            let words = argument.split(whereSeparator: { $0 == " " || $0 == "\t" })
            switch words.first {
            case "relative": read.relative = true
            case "big": read.littleEndian = false
            case "little": read.littleEndian = true
            case "string": text = true
            case "hex": read.base = 16
            case "dec": read.base = 10
            case "oct": read.base = 8
            case "dce": throw .unsupported("\(option):dce (needs the DCE/RPC preprocessor)")
            case "bitmask":
                guard words.count == 2, let mask = integer(words[1]).flatMap(UInt32.init(exactly:)), mask != 0 else {
                    throw .malformed("\(option): bitmask needs a non-zero 32-bit number")
                }
                read.bitmask = mask
            default: others.append(argument)
            }
        }
        if text {
            // Without a base the text's own prefix decides (`0x` hex, `0` octal), as strtoul's base 0.
            if read.base == nil { read.base = 0 }
        } else if read.base != nil {
            throw .malformed("\(option): hex, dec and oct go with string")
        }
        let least = option == "byte_jump" ? 0 : 1
        guard let n = Int(count.trimmingWhitespace), text ? (least...10).contains(n) : (least...4).contains(n) else {
            throw .malformed("\(option) reads 1 to 4 bytes (1 to 10 with string), not \(count)")
        }
        read.count = n
        return (read, others)
    }

    static func arguments(_ v: Substring) -> [Substring] { v.split(separator: ",").map { $0.trimmingWhitespace } }

    /// `byte_test:bytes,[!]operator,value,offset[,...]`.
    static func byteTest(_ v: Substring, variables: [String]) throws(RuleError) -> ByteTest {
        let a = arguments(v)
        guard a.count >= 4 else { throw .malformed("byte_test needs bytes, operator, value and offset") }
        var opText = a[1]
        let negated = opText.first == "!"
        if negated { opText = opText.dropFirst() }
        // A bare `!` is "not equal".
        let op: ByteTest.Operator? = opText.isEmpty && negated ? .equal : ByteTest.Operator(rawValue: String(opText))
        guard let op else { throw .malformed("byte_test: unknown operator \(a[1])") }
        let value: RuleNumber
        if isVariableName(a[2]) {
            value = try ruleNumber(a[2], in: 0...0, variables: variables, option: "byte_test")
        } else {
            guard let n = cInteger(a[2]), (0...Int(UInt32.max)).contains(n) else { throw .malformed("byte_test: value \(a[2]) is not a 32-bit number") }
            value = .constant(n)
        }
        let (read, others) = try byteRead(count: a[0], offset: a[3], rest: a[4...], variables: variables, option: "byte_test")
        if let unknown = others.first { throw .malformed("byte_test: unknown argument \(unknown)") }
        return ByteTest(read: read, op: op, negated: negated, value: value)
    }

    /// `byte_jump:bytes,offset[,...]`.
    static func byteJump(_ v: Substring, variables: [String]) throws(RuleError) -> ByteJump {
        let a = arguments(v)
        guard a.count >= 2 else { throw .malformed("byte_jump needs bytes and offset") }
        let (read, others) = try byteRead(count: a[0], offset: a[1], rest: a[2...], variables: variables, option: "byte_jump")
        var jump = ByteJump(read: read)
        for argument in others {
            let words = argument.split(whereSeparator: { $0 == " " || $0 == "\t" })
            switch (words.first, words.count) {
            case ("align", 1): jump.align = true
            case ("from_beginning", 1): jump.from = .beginning
            case ("from_end", 1): jump.from = .end
            case ("multiplier", 2):
                guard let m = Int(words[1]), (1...65535).contains(m) else { throw .malformed("byte_jump: multiplier needs 1...65535") }
                jump.multiplier = m
            case ("post_offset", 2):
                jump.postOffset = try ruleNumber(words[1], in: -65535...65535, variables: variables, option: "byte_jump post_offset")
            default: throw .malformed("byte_jump: unknown argument \(argument)")
            }
        }
        return jump
    }

    /// `byte_extract:bytes,offset,name[,...]`; defines `name` for the options after it
    /// (a name defined again is the same variable, given a new value, as in Snort).
    static func byteExtract(_ v: Substring, variables: inout [String]) throws(RuleError) -> ByteExtract {
        let a = arguments(v)
        guard a.count >= 3 else { throw .malformed("byte_extract needs bytes, offset and a name") }
        let (read, others) = try byteRead(count: a[0], offset: a[1], rest: a[3...], variables: variables, option: "byte_extract")
        var extract = ByteExtract(read: read, slot: try define(a[2], in: &variables, option: "byte_extract"))
        if extract.read.base == 0 { extract.read.base = 10 }  // byte_extract's string is decimal by default
        for argument in others {
            let words = argument.split(whereSeparator: { $0 == " " || $0 == "\t" })
            switch (words.first, words.count) {
            case ("multiplier", 2):
                guard let m = Int(words[1]), (1...65535).contains(m) else { throw .malformed("byte_extract: multiplier needs 1...65535") }
                extract.multiplier = m
            case ("align", 2):
                guard let n = Int(words[1]), n == 2 || n == 4 else { throw .malformed("byte_extract: align is 2 or 4") }
                extract.align = n
            default: throw .malformed("byte_extract: unknown argument \(argument)")
            }
        }
        return extract
    }

    /// The slot of the variable `name` that byte_extract or byte_math defines: a new one,
    /// or the one a name defined again already has (as in Snort).
    static func define(_ name: Substring, in variables: inout [String], option: String) throws(RuleError) -> Int {
        guard isVariableName(name) else { throw .malformed("\(option): \(name) is not a variable name") }
        if let slot = variables.firstIndex(of: String(name)) { return slot }
        guard variables.count < maximumVariables else { throw .malformed("\(option): at most \(maximumVariables) variables per rule") }
        variables.append(String(name))
        return variables.count - 1
    }

    /// `byte_math:` keyword arguments in any order: `bytes`, `offset`, `oper`, `rvalue`,
    /// `result` (all needed), `relative`, `endian big|little`, `string hex|dec|oct`,
    /// `bitmask`. `result` names a variable later options use, as byte_extract's.
    static func byteMath(_ v: Substring, variables: inout [String]) throws(RuleError) -> ByteMath {
        var named: [Substring: Substring] = [:]
        var relative = false
        for argument in arguments(v) {
            let words = argument.split(maxSplits: 1, whereSeparator: { $0 == " " || $0 == "\t" })
            guard let key = words.first else { continue }
            if key == "relative" && words.count == 1 { relative = true; continue }
            if key == "dce" { throw .unsupported("byte_math:dce (needs the DCE/RPC preprocessor)") }
            guard words.count == 2, named[key] == nil,
                  ["bytes", "offset", "oper", "rvalue", "result", "endian", "string", "bitmask"].contains(key) else {
                throw .malformed("byte_math: bad argument \(argument)")
            }
            named[key] = words[1].trimmingWhitespace
        }
        guard let bytes = named["bytes"], let offset = named["offset"], let oper = named["oper"], let rvalue = named["rvalue"],
              let result = named["result"] else { throw .malformed("byte_math needs bytes, offset, oper, rvalue and result") }
        guard let op = ByteMath.Operator(rawValue: String(oper)) else { throw .malformed("byte_math: unknown operator \(oper)") }
        var rest: [Substring] = relative ? ["relative"] : []
        if let e = named["endian"] {
            guard e == "big" || e == "little" else { throw .malformed("byte_math: endian big or little, not \(e)") }
            rest.append(e)
        }
        if let base = named["string"] {
            guard ["hex", "dec", "oct"].contains(base) else { throw .malformed("byte_math: string hex, dec or oct, not \(base)") }
            rest += ["string", base]
        }
        if let mask = named["bitmask"] { rest.append("bitmask \(mask)") }
        let (read, _) = try byteRead(count: bytes, offset: offset, rest: rest[...], variables: variables, option: "byte_math")
        let r: RuleNumber
        if isVariableName(rvalue) {
            r = try ruleNumber(rvalue, in: 0...0, variables: variables, option: "byte_math rvalue")
        } else {
            guard let n = cInteger(rvalue), (0...Int(UInt32.max)).contains(n) else { throw .malformed("byte_math: rvalue \(rvalue) is not a 32-bit number") }
            guard !(n == 0 && op == .divide) else { throw .malformed("byte_math: division by 0") }
            r = .constant(n)
        }
        return ByteMath(read: read, op: op, rvalue: r, slot: try define(result, in: &variables, option: "byte_math"))
    }

    /// `rpc:PROGRAM[,VERSION|*[,PROCEDURE|*]]` (numbers as C's strtoul reads them).
    static func rpc(_ v: Substring) throws(RuleError) -> RPCCallTest {
        let a = arguments(v)
        guard (1...3).contains(a.count) else { throw .malformed("rpc takes a program, a version and a procedure") }
        func number(_ t: Substring, _ what: String) throws(RuleError) -> UInt32? {
            if t == "*" && what != "program" { return nil }
            guard let n = cInteger(t), let v = UInt32(exactly: n) else { throw .malformed("rpc: \(what) \(t) is not a 32-bit number") }
            return v
        }
        var test = RPCCallTest(program: try number(a[0], "program")!)
        if a.count > 1 { test.version = try number(a[1], "version") }
        if a.count > 2 { test.procedure = try number(a[2], "procedure") }
        return test
    }

    /// `stream_size:client|server|both|either,=|!=|<|>|<=|>=,N`.
    static func streamSize(_ v: Substring) throws(RuleError) -> StreamSizeTest {
        let a = arguments(v)
        guard a.count == 3, let side = StreamSizeTest.Side(rawValue: a[0].lowercased()) else {
            throw .malformed("stream_size needs client|server|both|either, an operator and a size, not \(v)")
        }
        let comparisons: [Substring: NumberTest.Comparison] = ["=": .equal, "!=": .notEqual, "<": .less, ">": .greater,
                                                               "<=": .lessOrEqual, ">=": .greaterOrEqual]
        guard let comparison = comparisons[a[1]] else { throw .malformed("stream_size: unknown operator \(a[1])") }
        guard let n = cInteger(a[2]), (0...Int(UInt32.max)).contains(n) else { throw .malformed("stream_size: \(a[2]) is not a 32-bit size") }
        return StreamSizeTest(side: side, test: NumberTest(comparison: comparison, low: UInt64(n)))
    }

    /// `flowbits:operation[,bits][,group]`; bits joined by `&` (all) or `|` (any), or
    /// `all`/`any` with a group.
    static func flowbits(_ v: Substring) throws(RuleError) -> Flowbits {
        let a = arguments(v)
        guard let first = a.first, let op = Flowbits.Operation(rawValue: String(first)) else {
            throw .malformed("flowbits: unknown operation \(a.first ?? "")")
        }
        guard a.count <= 3 else { throw .malformed("flowbits takes an operation, bits and a group") }
        var f = Flowbits(operation: op, names: [])
        if op == .reset {
            guard a.count <= 2 else { throw .malformed("flowbits:reset takes at most a group") }
            f.group = a.count == 2 ? String(a[1]) : nil
            return f
        }
        guard a.count >= 2 else { throw .malformed("flowbits:\(op.rawValue) needs bits") }
        f.group = a.count == 3 ? String(a[2]) : nil
        let spec = a[1]
        if spec == "all" || spec == "any" {
            guard f.group != nil else { throw .malformed("flowbits:\(op.rawValue),\(spec) needs a group") }
            f.requiresAll = spec == "all"
            return f
        }
        let hasAnd = spec.contains("&"), hasOr = spec.contains("|")
        guard !(hasAnd && hasOr) else { throw .malformed("flowbits: bits joined by both & and |") }
        if hasOr && ![.isset, .isnotset].contains(op) { throw .malformed("flowbits:\(op.rawValue) cannot take bits joined by |") }
        if op == .setx && f.group == nil { throw .malformed("flowbits:setx needs a group") }
        f.requiresAll = !hasOr
        f.names = spec.split(whereSeparator: { $0 == "&" || $0 == "|" }).map { String($0.trimmingWhitespace) }
        guard !f.names.isEmpty, f.names.allSatisfy({ !$0.isEmpty && !$0.contains(" ") }) else {
            throw .malformed("flowbits: bad bit names \(spec)")
        }
        return f
    }

    /// A header field test: `N`, `!N`, `<N`, `>N`, `<=N`, `>=N`, `=N`, `A<>B`
    /// (exclusive), `A-B` (inclusive), `-N` (at most N), `N-` (at least N).
    static func headerTest(_ field: HeaderTest.Field, _ v: Substring) throws(RuleError) -> HeaderTest {
        let t = v.trimmingWhitespace
        let limit: UInt64 = switch field {
        case .ttl, .tos, .ipProto, .icmpType, .icmpCode: 255
        case .id, .window, .icmpID, .icmpSeq: 65535
        case .fragOffset: 65535
        case .seq, .ack: UInt64(UInt32.max)
        }
        func number(_ s: Substring) throws(RuleError) -> UInt64 {
            let s = s.trimmingWhitespace
            if field == .ipProto, let n = Self.protocolNumbers[String(s)] { return n }
            guard let n = integer(s), n >= 0, UInt64(n) <= limit else {
                throw .malformed("\(field.rawValue): \(s) is not a number in 0...\(limit)")
            }
            return UInt64(n)
        }
        if let r = t.range(of: "<>") {
            let high = try number(t[r.upperBound...])
            // `icode:-1<>30` reads "codes below 30".
            if t[..<r.lowerBound].trimmingWhitespace == "-1" { return HeaderTest(field: field, test: NumberTest(comparison: .less, low: high)) }
            return HeaderTest(field: field, test: NumberTest(comparison: .exclusiveRange, low: try number(t[..<r.lowerBound]), high: high))
        }
        for (prefix, comparison) in [("<=", NumberTest.Comparison.lessOrEqual), (">=", .greaterOrEqual), ("<", .less),
                                     (">", .greater), ("!", .notEqual), ("=", .equal)] where t.hasPrefix(prefix) {
            return HeaderTest(field: field, test: NumberTest(comparison: comparison, low: try number(t.dropFirst(prefix.count))))
        }
        if field == .ttl, let dash = t.firstIndex(of: "-") {
            let low = t[..<dash], high = t[t.index(after: dash)...]
            if low.isEmpty { return HeaderTest(field: field, test: NumberTest(comparison: .lessOrEqual, low: try number(high))) }
            if high.isEmpty { return HeaderTest(field: field, test: NumberTest(comparison: .greaterOrEqual, low: try number(low))) }
            return HeaderTest(field: field, test: NumberTest(comparison: .inclusiveRange, low: try number(low), high: try number(high)))
        }
        return HeaderTest(field: field, test: NumberTest(comparison: .equal, low: try number(t)))
    }

    /// `ip_proto` names.
    static let protocolNumbers: [String: UInt64] = [
        "ip": 0, "icmp": 1, "igmp": 2, "ipip": 4, "tcp": 6, "egp": 8, "pup": 12, "udp": 17, "idp": 22, "tp": 29,
        "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "ipv6-icmp": 58,
        "icmpv6": 58, "ipv6-nonxt": 59, "ipv6-opts": 60, "mtp": 92, "encap": 98, "pim": 103, "comp": 108, "sctp": 132, "raw": 255,
    ]

    /// `tag:session|host,COUNT,packets|seconds|bytes[,src|dst]` or `tag:session[,exclusive]`.
    static func tag(_ v: Substring) throws(RuleError) -> Tag {
        let a = arguments(v)
        guard let kind = a.first.flatMap({ Tag.Kind(rawValue: String($0)) }) else { throw .malformed("tag: session or host first, not \(v)") }
        if a.count <= 2, kind == .session, a.count == 1 || a[1] == "exclusive" {
            return Tag(kind: kind, count: 0, metric: .packets)
        }
        guard a.count >= 3, let count = Int(a[1]), count > 0, let metric = Tag.Metric(rawValue: String(a[2])) else {
            throw .malformed("tag needs session|host, a count and packets|seconds|bytes, not \(v)")
        }
        if a.count == 4 {
            guard kind == .host, a[3] == "src" || a[3] == "dst" else { throw .malformed("tag: src or dst goes with host only") }
        } else if a.count > 4 {
            throw .malformed("tag: too many arguments in \(v)")
        }
        return Tag(kind: kind, count: count, metric: metric)
    }

    /// `fragbits:[+*!]MDR`: M more fragments (1), D don't fragment (2), R reserved (4).
    static func fragmentBits(_ v: Substring) throws(RuleError) -> FlagsTest {
        var letters = v.trimmingWhitespace
        let mode = flagsMode(&letters)
        var mask: UInt8 = 0
        for c in letters {
            switch c {
            case "M": mask |= 1
            case "D": mask |= 2
            case "R": mask |= 4
            default: throw .malformed("fragbits: unknown bit \(c) (M, D, R)")
            }
        }
        guard mask != 0 else { throw .malformed("fragbits needs M, D or R") }
        return FlagsTest(mode: mode, mask: mask, ignored: 0)
    }

    /// `base64_decode[:[bytes N][, offset N][, relative]]`, each at most once, in any order.
    static func base64Decode(_ v: Substring) throws(RuleError) -> Base64Decode {
        var d = Base64Decode()
        let a = v.isEmpty ? [] : arguments(v)
        guard a.count <= 3 else { throw .malformed("base64_decode takes bytes, offset and relative") }
        for argument in a {
            let words = argument.split(whereSeparator: { $0 == " " || $0 == "\t" })
            switch (words.first, words.count) {
            case ("relative", 1): d.relative = true
            case ("bytes", 2):
                guard let n = Int(words[1]), (1...65535).contains(n) else { throw .malformed("base64_decode: bytes needs 1...65535") }
                d.bytes = n
            case ("offset", 2):
                guard let n = Int(words[1]), (0...65535).contains(n) else { throw .malformed("base64_decode: offset needs 0...65535") }
                d.offset = n
            default: throw .malformed("base64_decode: unknown argument \(argument)")
            }
        }
        return d
    }

    /// `asn1:` words separated by commas or blanks, keywords in any case: the checks, and
    /// `absolute_offset N` or `relative_offset N` (the last one given wins, as in Snort).
    static func asn1(_ v: Substring) throws(RuleError) -> ASN1Check {
        let words = v.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" })
        guard !words.isEmpty else { throw .malformed("asn1 needs at least one check") }
        var check = ASN1Check()
        var i = 0
        func argument(_ keyword: Substring, in range: ClosedRange<Int>) throws(RuleError) -> Int {
            i += 1
            guard i < words.count, let n = Int(words[i]), range.contains(n) else {
                throw .malformed("asn1: \(keyword) needs a number in \(range)")
            }
            return n
        }
        while i < words.count {
            let keyword = words[i]
            switch keyword.lowercased() {
            case "bitstring_overflow": check.bitstringOverflow = true
            case "double_overflow": check.doubleOverflow = true
            case "print": check.print = true
            case "oversize_length": check.oversizeLength = UInt32(try argument(keyword, in: 0...Int(Int32.max)))
            case "absolute_offset": (check.offset, check.relative) = (try argument(keyword, in: -65535...65535), false)
            case "relative_offset": (check.offset, check.relative) = (try argument(keyword, in: -65535...65535), true)
            default: throw .malformed("asn1: unknown check \(keyword)")
            }
            i += 1
        }
        return check
    }
}
