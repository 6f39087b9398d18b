import FlexNIC
import FlexWire
import Foundation

/// Reads and writes a `SteeringProgram` as TOML (the files in `Configs/steering/`,
/// which `flexbench programs` writes from the programs the servers build). Format:
///
/// ```toml
/// name = "kvs-udp-key"
/// queues = 2                   # core queues 0..<queues
/// default = "slow-path"        # or "drop", or "queue 0"
/// redirection_entries = 128    # power of two
/// verify_l4_checksums = false
/// toeplitz_key = "6d5a..."     # hex, 16 bytes or more (default: Microsoft's RSS key)
/// dccp_in_udp = false          # UDP payloads carry DCCP
/// flow_registers = { capacity = 256, initial = [1, 0] }   # per-flow registers
///
/// [[stage]]
/// name = "memcached-get"
/// match = { ip_proto = "udp", dst_port = 11211 }   # exact, "1000-2000", "10.0.0.0/8", "0x10/0x12", "*"
/// payload = [ { offset = 8, text = "get " } ]      # or hex = "0a0b", optional mask = "ff00"
/// actions = ["hash payload-token 12 250", "write-hash", "redirect"]
/// ```
///
/// Match keys: ether_type, vlan, ip_proto (number or udp/tcp/dccp/icmp), src_ip, dst_ip,
/// src_port, dst_port, tcp_flags, payload_length, `payload[OFFSET:WIDTH]` (WIDTH 1, 2, 4
/// or 8 bytes, big-endian), dccp_type, dccp_extended, dccp_src_port, dccp_dst_port,
/// dccp_seq, and the metadata flow_state (found, not-open, full), `register[N]`,
/// `comparison[SLOT]` (less, equal, greater) and placement (placed, withheld,
/// refused). A value starting with `!` matches when the pattern does not. Actions:
/// `drop`, `queue N`, `hash 4-tuple`, `hash symmetric`, `hash addresses`,
/// `hash payload OFFSET [LENGTH]`, `hash payload-token OFFSET MAXLEN`,
/// `hash payload-field OFFSET LENGTHAT [SKIPAT]`, `redirect`, `spread Q...` (one of these
/// queues by the last hash), `write-hash`, `strip l2|l3|l4`, `log OFFSET [LENGTH]`,
/// `slow-path`, `reply-from-table KEYOFFSET MAXLEN KEEP`, `lookup-flow [FIELD=PATTERN]`
/// (open a new flow only when it holds), `compare FIELD REGISTER SLOT`,
/// `set-register REGISTER FIELD [PLUS]`, `record-ack`, `place TARGETOFFSET`, and
/// `reply EDIT...` with edits `swap-eth`, `swap-ip`, `swap-ports`, `dccp-ack`,
/// `dccp-ack-to-sender [REGISTER]`, `truncate N`, `set FIELD VALUE`. Payload offsets
/// count from the start of the L4 payload.
public enum ProgramFile {
    /// Reads and validates the program in `path`. Errors name the file and the stage.
    public static func load(path: String) throws -> SteeringProgram {
        guard let text = FileManager.default.contents(atPath: path).flatMap({ String(data: $0, encoding: .utf8) }) else {
            throw ProgramError("\(path): cannot read the file")
        }
        return try parse(text, source: path)
    }

    /// Parses program TOML; `source` names it in errors.
    public static func parse(_ text: String, source: String = "<program>") throws -> SteeringProgram {
        let file: FileModel
        do {
            file = try TOMLInput.decode(FileModel.self, from: text)
        } catch {
            throw ProgramError("\(source): \(error)")
        }
        let name = file.name ?? URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
        var stages: [SteeringProgram.Stage] = []
        for (i, s) in (file.stage ?? []).enumerated() {
            let at = "\(source): stage \(i + 1)\(s.name.map { " (\($0))" } ?? "")"
            do {
                stages.append(try stage(s, index: i))
            } catch let e as ProgramError {
                throw ProgramError("\(at): \(e.description)")
            }
        }
        var key = ToeplitzHash.microsoftKey
        if let text = file.toeplitz_key {
            do { key = try hex(text) } catch let e as ProgramError { throw ProgramError("\(source): toeplitz_key: \(e.description)") }
        }
        let program = SteeringProgram(
            name: name, queues: file.queues, stages: stages,
            defaultDisposition: try disposition(file.default ?? "slow-path", source: source),
            redirectionEntries: file.redirection_entries ?? RedirectionTable.defaultEntries,
            verifyL4Checksums: file.verify_l4_checksums ?? false, toeplitzKey: key,
            flowRegisters: try file.flow_registers.map { f in
                guard f.initial.allSatisfy({ $0 >= 0 }) else { throw ProgramError("\(source): flow_registers: initial values must not be negative") }
                return .init(capacity: f.capacity, initial: f.initial.map { UInt64($0) })
            },
            dccpInUDP: file.dccp_in_udp ?? false)
        try program.validate(label: source)
        return program
    }

    struct FileModel: Decodable {
        var name: String?
        var queues: Int
        var `default`: String?
        var redirection_entries: Int?
        var verify_l4_checksums: Bool?
        var toeplitz_key: String?
        var dccp_in_udp: Bool?
        var flow_registers: FlowRegistersModel?
        var stage: [StageModel]?
    }

    struct FlowRegistersModel: Decodable {
        var capacity: Int
        var initial: [Int]
    }

    struct StageModel: Decodable {
        var name: String?
        var match: [String: Scalar]?
        var payload: [PayloadModel]?
        var actions: [String]
    }

    struct PayloadModel: Decodable {
        var offset: Int
        var text: String?
        var hex: String?
        var mask: String?
    }

    /// A TOML value written as a number or as text.
    struct Scalar: Decodable {
        var text: String
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let i = try? c.decode(Int.self) { text = String(i) } else { text = try c.decode(String.self) }
        }
    }

    static func disposition(_ s: String, source: String) throws -> SteeringProgram.Disposition {
        let words = s.split(separator: " ")
        switch words.first {
        case "drop": return .drop
        case "slow-path": return .slowPath
        case "queue" where words.count == 2: if let q = Int(words[1]) { return .queue(q) }
        default: break
        }
        throw ProgramError("\(source): default must be \"drop\", \"slow-path\" or \"queue N\", not \"\(s)\"")
    }

    static func stage(_ s: StageModel, index: Int) throws -> SteeringProgram.Stage {
        var fields: [FieldMatch] = []
        for key in (s.match ?? [:]).keys.sorted() {
            fields.append(try fieldMatch(key, s.match![key]!.text))
        }
        var payload: [PayloadMatch] = []
        for p in s.payload ?? [] {
            let bytes: [UInt8]
            if let t = p.text { bytes = Array(t.utf8) } else if let h = p.hex { bytes = try hex(h) } else {
                throw ProgramError("payload match needs text or hex")
            }
            let mask = try p.mask.map(hex)
            guard mask == nil || mask!.count == bytes.count else { throw ProgramError("payload mask length differs from its bytes") }
            payload.append(PayloadMatch(offset: p.offset, bytes: bytes, mask: mask))
        }
        let actions = try s.actions.map(action)
        return SteeringProgram.Stage(s.name ?? "stage\(index + 1)", fields: fields, payload: payload, actions: actions)
    }

    static let fieldNames: [String: MatchField] = [
        "ether_type": .etherType, "vlan": .vlanID, "ip_proto": .ipProtocol, "src_ip": .sourceAddress,
        "dst_ip": .destinationAddress, "src_port": .sourcePort, "dst_port": .destinationPort,
        "tcp_flags": .tcpFlags, "payload_length": .payloadLength, "dccp_type": .dccpType, "dccp_extended": .dccpExtended,
        "dccp_src_port": .dccpSourcePort, "dccp_dst_port": .dccpDestinationPort, "dccp_seq": .dccpSequence,
        "flow_state": .flowState, "placement": .placement,
    ]

    static func matchField(_ key: String) throws -> MatchField {
        if let f = fieldNames[key] { return f }
        for (prefix, make) in [("register[", MatchField.flowRegister), ("comparison[", MatchField.comparison)]
        where key.hasPrefix(prefix) && key.hasSuffix("]") {
            if let n = Int(key.dropFirst(prefix.count).dropLast()) { return make(n) }
        }
        if key.hasPrefix("payload["), key.hasSuffix("]") {
            let inner = key.dropFirst(8).dropLast().split(separator: ":")
            if inner.count == 2, let o = Int(inner[0]), let w = Int(inner[1]) {
                guard (0...65_535).contains(o), [1, 2, 4, 8].contains(w) else {
                    throw ProgramError("\(key): a payload word lies at offset 0...65535 and is 1, 2, 4 or 8 bytes wide")
                }
                return .payloadWord(offset: o, width: w)
            }
        }
        throw ProgramError("unknown match field \"\(key)\" (known: \(fieldNames.keys.sorted().joined(separator: ", ")), "
            + "payload[OFFSET:WIDTH], register[N], comparison[SLOT])")
    }

    /// `key = value` of a stage's match table (a leading `!` negates).
    static func fieldMatch(_ key: String, _ value: String) throws -> FieldMatch {
        let field = try matchField(key)
        let negated = value.hasPrefix("!")
        return FieldMatch(field, try pattern(negated ? String(value.dropFirst()) : value, for: field, key: key), negated: negated)
    }

    /// Names for metadata values, both ways.
    static let symbols: [String: [String: UInt64]] = [
        "flow_state": ["found": UInt64(FlowRegisters.State.found.rawValue), "not-open": UInt64(FlowRegisters.State.notOpen.rawValue),
                       "full": UInt64(FlowRegisters.State.full.rawValue)],
        "comparison": ["less": UInt64(Comparison.less.rawValue), "equal": UInt64(Comparison.equal.rawValue),
                       "greater": UInt64(Comparison.greater.rawValue)],
        "placement": ["placed": UInt64(Placement.placed.rawValue), "withheld": UInt64(Placement.withheld.rawValue),
                      "refused": UInt64(Placement.refused.rawValue)],
    ]

    static func symbolTable(_ field: MatchField) -> [String: UInt64]? {
        switch field {
        case .flowState: return symbols["flow_state"]
        case .comparison: return symbols["comparison"]
        case .placement: return symbols["placement"]
        default: return nil
        }
    }

    static let protocolNames: [String: UInt64] = ["icmp": 1, "tcp": 6, "udp": 17, "dccp": 33]

    static func number(_ s: Substring, for field: MatchField) -> UInt64? {
        let t = s.trimmingCharacters(in: .whitespaces)
        if field == .ipProtocol, let p = protocolNames[t.lowercased()] { return p }
        if let v = symbolTable(field)?[t] { return v }
        if field == .sourceAddress || field == .destinationAddress, let a = IPv4Address(t) { return UInt64(a.value) }
        if t.hasPrefix("0x") { return UInt64(t.dropFirst(2), radix: 16) }
        return UInt64(t)
    }

    static func pattern(_ text: String, for field: MatchField, key: String) throws -> FieldPattern {
        let bad = ProgramError("cannot read \(key) = \"\(text)\" (a number, LOW-HIGH, VALUE/PREFIXLEN, VALUE/0xMASK or *)")
        if text == "*" { return .any }
        if let v = symbolTable(field)?[text] { return .exact(v) }  // before ranges: "not-open"
        if let slash = text.firstIndex(of: "/") {
            guard let v = number(text[..<slash], for: field) else { throw bad }
            let rest = text[text.index(after: slash)...]
            if rest.hasPrefix("0x"), let m = UInt64(rest.dropFirst(2), radix: 16) { return .masked(v, mask: m) }
            guard let bits = Int(rest) else { throw bad }
            return .prefix(v, bits: bits)
        }
        if let dash = text.firstIndex(of: "-"), dash != text.startIndex {
            guard let lo = number(text[..<dash], for: field), let hi = number(text[text.index(after: dash)...], for: field) else { throw bad }
            return .range(lo, hi)
        }
        guard let v = number(Substring(text), for: field) else { throw bad }
        let limit: UInt64 = field.bitWidth >= 64 ? .max : (1 << UInt64(field.bitWidth)) - 1
        guard v <= limit else { throw ProgramError("\(key) = \(v) does not fit \(field.bitWidth) bits") }
        return .exact(v)
    }

    static func hex(_ s: String) throws -> [UInt8] {
        let digits = Array(s.filter { !$0.isWhitespace })
        guard digits.count % 2 == 0 else { throw ProgramError("hex \"\(s)\" has an odd number of digits") }
        return try stride(from: 0, to: digits.count, by: 2).map { i in
            guard let b = UInt8(String(digits[i...i + 1]), radix: 16) else { throw ProgramError("bad hex \"\(s)\"") }
            return b
        }
    }

    static func action(_ text: String) throws -> Action {
        let w = text.split(separator: " ").map(String.init)
        let bad = ProgramError("cannot read action \"\(text)\"")
        func int(_ i: Int) throws -> Int {
            guard i < w.count, let v = Int(w[i]) else { throw bad }
            return v
        }
        switch w.first {
        case "drop"?: return .drop
        case "slow-path"?: return .slowPath
        case "reply-from-table"?: return .replyFromTable(keyOffset: try int(1), maxKeyLength: try int(2), keepPrefix: try int(3))
        case "redirect"?: return .redirect
        case "write-hash"?: return .writeHash
        case "queue"?: return .toQueue(try int(1))
        case "spread"?:
            guard w.count > 1 else { throw bad }
            return .spread(try (1..<w.count).map { try int($0) })
        case "strip"?:
            guard w.count == 2, let l = StripLayer(rawValue: w[1]) else { throw bad }
            return .strip(l)
        case "log"?: return .appendToLog(offset: try int(1), length: w.count > 2 ? try int(2) : nil)
        case "record-ack"?: return .recordAck
        case "place"?: return .place(targetAt: try int(1))
        case "lookup-flow"?:
            guard w.count <= 2 else { throw bad }
            guard w.count == 2 else { return .lookupFlow(openWhen: nil) }
            let parts = w[1].split(separator: "=", maxSplits: 1).map(String.init)
            guard parts.count == 2 else { throw bad }
            return .lookupFlow(openWhen: try fieldMatch(parts[0], parts[1]))
        case "compare"?:
            guard w.count == 4 else { throw bad }
            return .compare(try matchField(w[1]), register: try int(2), slot: try int(3))
        case "set-register"?:
            guard w.count == 3 || w.count == 4 else { throw bad }
            guard w.count == 3 || UInt64(w[3]) != nil else { throw bad }
            return .setRegister(try int(1), to: try matchField(w[2]), plus: w.count == 4 ? UInt64(w[3])! : 0)
        case "hash"?:
            switch w.count > 1 ? w[1] : "" {
            case "4-tuple": return .hash(.fourTuple)
            case "symmetric": return .hash(.symmetricFourTuple)
            case "addresses": return .hash(.addresses)
            case "payload": return .hash(.payload(offset: try int(2), length: w.count > 3 ? try int(3) : nil))
            case "payload-token": return .hash(.payloadToken(offset: try int(2), maxLength: try int(3)))
            case "payload-field":
                return .hash(.payloadField(offset: try int(2), lengthAt: try int(3), skipAt: w.count > 4 ? try int(4) : nil))
            default: throw bad
            }
        case "reply"?:
            var edits: [ReplyEdit] = []
            var i = 1
            while i < w.count {
                switch w[i] {
                case "swap-eth": edits.append(.swapEthernet)
                case "swap-ip": edits.append(.swapIPv4)
                case "swap-ports": edits.append(.swapPorts)
                case "dccp-ack": edits.append(.dccpAck)
                case "dccp-ack-to-sender":
                    if i + 1 < w.count, let r = Int(w[i + 1]) {
                        edits.append(.dccpAckToSender(register: r)); i += 1
                    } else {
                        edits.append(.dccpAckToSender(register: nil))
                    }
                case "truncate": edits.append(.truncatePayload(try int(i + 1))); i += 1
                case "set":
                    guard i + 2 < w.count, let f = fieldNames[w[i + 1]], let v = number(Substring(w[i + 2]), for: f) else { throw bad }
                    edits.append(.set(f, v)); i += 2
                default: throw bad
                }
                i += 1
            }
            return .reply(edits)
        default: throw bad
        }
    }

    // MARK: Writing

    /// `program` as a file holds it: each stage's matches in key order (what `parse`
    /// returns for what `write` wrote).
    public static func canonical(_ program: SteeringProgram) -> SteeringProgram {
        var p = program
        for i in p.stages.indices { p.stages[i].fields.sort { fieldName($0.field) < fieldName($1.field) } }
        return p
    }

    /// The program as TOML that `parse` reads back to the same program, with each
    /// stage's matches in key order (`comment` lines first). A stage that matches one
    /// field twice cannot be written (a TOML table holds a key once).
    public static func write(_ program: SteeringProgram, comment: String? = nil) throws -> String {
        var out = comment.map { $0.split(separator: "\n", omittingEmptySubsequences: false).map { "# \($0)" }.joined(separator: "\n") + "\n" } ?? ""
        out += "name = \(quoted(program.name))\nqueues = \(program.queues)\n"
        switch program.defaultDisposition {
        case .drop: out += "default = \"drop\"\n"
        case .slowPath: out += "default = \"slow-path\"\n"
        case .queue(let q): out += "default = \"queue \(q)\"\n"
        }
        if program.redirectionEntries != RedirectionTable.defaultEntries { out += "redirection_entries = \(program.redirectionEntries)\n" }
        if program.verifyL4Checksums { out += "verify_l4_checksums = true\n" }
        if program.toeplitzKey != ToeplitzHash.microsoftKey { out += "toeplitz_key = \(quoted(hexText(program.toeplitzKey)))\n" }
        if program.dccpInUDP { out += "dccp_in_udp = true\n" }
        if let f = program.flowRegisters {
            guard f.initial.allSatisfy({ $0 <= UInt64(Int64.max) }) else {
                throw ProgramError("\(program.name): an initial register value above 2^63-1 does not fit a TOML integer")
            }
            out += "flow_registers = { capacity = \(f.capacity), initial = [\(f.initial.map(String.init).joined(separator: ", "))] }\n"
        }
        for s in program.stages {
            out += "\n[[stage]]\nname = \(quoted(s.name))\n"
            let matches = s.fields.map { (key: fieldName($0.field), value: patternText($0)) }.sorted { $0.key < $1.key }
            if let twice = zip(matches, matches.dropFirst()).first(where: { $0.key == $1.key }) {
                throw ProgramError("\(program.name): stage \(s.name) matches \(twice.0.key) twice, which TOML cannot hold")
            }
            if !matches.isEmpty {
                out += "match = { " + matches.map { "\(tableKey($0.key)) = \($0.value)" }.joined(separator: ", ") + " }\n"
            }
            if !s.payload.isEmpty {
                out += "payload = [ " + s.payload.map(payloadText).joined(separator: ", ") + " ]\n"
            }
            out += "actions = [" + s.actions.map { quoted(actionText($0)) }.joined(separator: ", ") + "]\n"
        }
        return out
    }

    /// A TOML basic string: quotes and backslashes escaped, and control characters,
    /// which TOML does not allow as they are (a name may hold any, from `\f` in a file).
    static func quoted(_ s: String) -> String {
        var out = "\""
        for u in s.unicodeScalars {
            switch u {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "\r": out += "\\r"
            case _ where u.value < 0x20 || u.value == 0x7F: out += String(format: "\\u%04X", u.value)
            default: out.unicodeScalars.append(u)
            }
        }
        return out + "\""
    }

    static func tableKey(_ key: String) -> String { key.contains("[") ? quoted(key) : key }

    static func hexText(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    static func fieldName(_ f: MatchField) -> String {
        switch f {
        case .payloadWord(let o, let w): return "payload[\(o):\(w)]"
        case .flowRegister(let r): return "register[\(r)]"
        case .comparison(let slot): return "comparison[\(slot)]"
        default: return fieldNames.first { $0.value == f }!.key
        }
    }

    /// A value as a match table holds it: a bare number when it is one, else text.
    static func patternText(_ m: FieldMatch) -> String {
        let text = valueText(m.pattern, for: m.field)
        if !m.negated, case .exact = m.pattern, let n = Int64(text) { return String(n) }
        return quoted((m.negated ? "!" : "") + text)
    }

    static func valueText(_ p: FieldPattern, for field: MatchField) -> String {
        func v(_ x: UInt64) -> String {
            if field == .sourceAddress || field == .destinationAddress { return IPv4Address(UInt32(truncatingIfNeeded: x)).description }
            if let name = symbolTable(field)?.first(where: { $0.value == x })?.key { return name }
            return String(x)
        }
        switch p {
        case .any: return "*"
        case .exact(let x): return v(x)
        case .range(let lo, let hi): return "\(v(lo))-\(v(hi))"
        case .prefix(let x, let bits): return "\(v(x))/\(bits)"
        case .masked(let x, let mask): return "0x\(String(x, radix: 16))/0x\(String(mask, radix: 16))"
        }
    }

    static func payloadText(_ p: PayloadMatch) -> String {
        let printable = p.bytes.allSatisfy { (0x20...0x7E).contains($0) && $0 != 0x22 && $0 != 0x5C }
        if printable && p.mask.allSatisfy({ $0 == 0xFF }) {
            return "{ offset = \(p.offset), text = \(quoted(String(decoding: p.bytes, as: UTF8.self))) }"
        }
        let mask = p.mask.allSatisfy { $0 == 0xFF } ? "" : ", mask = \(quoted(hexText(p.mask)))"
        return "{ offset = \(p.offset), hex = \(quoted(hexText(p.bytes)))\(mask) }"
    }

    static func actionText(_ a: Action) -> String {
        switch a {
        case .drop: return "drop"
        case .slowPath: return "slow-path"
        case .redirect: return "redirect"
        case .writeHash: return "write-hash"
        case .recordAck: return "record-ack"
        case .toQueue(let q): return "queue \(q)"
        case .spread(let qs): return "spread " + qs.map(String.init).joined(separator: " ")
        case .strip(let l): return "strip \(l.rawValue)"
        case .appendToLog(let o, let l): return "log \(o)" + (l.map { " \($0)" } ?? "")
        case .place(let o): return "place \(o)"
        case .replyFromTable(let k, let m, let p): return "reply-from-table \(k) \(m) \(p)"
        case .lookupFlow(let condition):
            return "lookup-flow" + (condition.map { " \(fieldName($0.field))=\($0.negated ? "!" : "")\(valueText($0.pattern, for: $0.field))" } ?? "")
        case .compare(let f, let r, let slot): return "compare \(fieldName(f)) \(r) \(slot)"
        case .setRegister(let r, let f, let plus): return "set-register \(r) \(fieldName(f))" + (plus == 0 ? "" : " \(plus)")
        case .hash(let h):
            switch h {
            case .fourTuple: return "hash 4-tuple"
            case .symmetricFourTuple: return "hash symmetric"
            case .addresses: return "hash addresses"
            case .payload(let o, let l): return "hash payload \(o)" + (l.map { " \($0)" } ?? "")
            case .payloadToken(let o, let m): return "hash payload-token \(o) \(m)"
            case .payloadField(let o, let l, let k): return "hash payload-field \(o) \(l)" + (k.map { " \($0)" } ?? "")
            }
        case .reply(let edits):
            return (["reply"] + edits.map { e -> String in
                switch e {
                case .swapEthernet: return "swap-eth"
                case .swapIPv4: return "swap-ip"
                case .swapPorts: return "swap-ports"
                case .dccpAck: return "dccp-ack"
                case .dccpAckToSender(let r): return "dccp-ack-to-sender" + (r.map { " \($0)" } ?? "")
                case .truncatePayload(let n): return "truncate \(n)"
                case .set(let f, let v): return "set \(fieldName(f)) \(valueText(.exact(v), for: f))"
                }
            }).joined(separator: " ")
        }
    }
}
