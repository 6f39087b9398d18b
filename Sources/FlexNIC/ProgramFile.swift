import Foundation
import FlexWire
import TOMLKit

/// Loads a `SteeringProgram` from TOML (the files in `Configs/steering/`). Format:
///
/// ```toml
/// name = "kvs-udp-key"
/// queues = 2                   # core queues 0..<queues
/// default = "slow-path"        # or "drop", or "queue 0"
/// redirection_entries = 128    # power of two
/// verify_l4_checksums = false
///
/// [[stage]]
/// name = "memcached-get"
/// match = { ip_proto = "udp", dst_port = 11211 }   # exact, "1000-2000", "10.0.0.0/8", "0x10/0x12", "*"
/// payload = [ { offset = 8, text = "get " } ]      # or hex = "0a0b", optional mask = "ff00"
/// actions = ["hash payload-token 12 250", "write-hash", "redirect"]
/// ```
///
/// Match keys: ether_type, vlan, ip_proto (number or udp/tcp/dccp/icmp), src_ip, dst_ip,
/// src_port, dst_port, tcp_flags, dccp_type, payload_length, and `payload[OFFSET:WIDTH]`
/// (WIDTH 1, 2, 4 or 8 bytes, big-endian). Actions: `drop`, `queue N`, `hash 4-tuple`,
/// `hash symmetric`, `hash addresses`, `hash payload OFFSET [LENGTH]`,
/// `hash payload-token OFFSET MAXLEN`, `hash payload-field OFFSET LENGTHAT [SKIPAT]`, `redirect`,
/// `spread Q...` (one of these queues by the last hash), `write-hash`, `strip l2|l3|l4`,
/// `log OFFSET [LENGTH]`, `slow-path`, `reply-from-table KEYOFFSET MAXLEN KEEP`, and `reply EDIT...` with edits `swap-eth`,
/// `swap-ip`, `swap-ports`, `dccp-ack`, `truncate N`, `set FIELD VALUE`.
/// Payload offsets count from the start of the L4 payload.
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
            file = try TOMLDecoder(strictDecoding: true).decode(FileModel.self, from: text)
        } catch let e as TOMLParseError {
            throw ProgramError("\(source): line \(e.source.begin.line), column \(e.source.begin.column): \(e.description)")
        } catch let e as UnexpectedKeysError {
            let keys = e.keys.keys.sorted().joined(separator: ", ")
            throw ProgramError("\(source): unknown key(s) \(keys)")
        } catch let DecodingError.keyNotFound(key, ctx) {
            throw ProgramError("\(source): missing \(path(ctx.codingPath + [key]))")
        } catch let DecodingError.typeMismatch(_, ctx) {
            throw ProgramError("\(source): wrong type at \(path(ctx.codingPath)): \(ctx.debugDescription)")
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
        let program = SteeringProgram(
            name: name, queues: file.queues, stages: stages,
            defaultDisposition: try disposition(file.default ?? "slow-path", source: source),
            redirectionEntries: file.redirection_entries ?? RedirectionTable.defaultEntries,
            verifyL4Checksums: file.verify_l4_checksums ?? false)
        try program.validate(label: source)
        return program
    }

    static func path(_ keys: [CodingKey]) -> String {
        keys.map { $0.intValue.map { "[\($0 + 1)]" } ?? $0.stringValue }.joined(separator: ".")
    }

    struct FileModel: Decodable {
        var name: String?
        var queues: Int
        var `default`: String?
        var redirection_entries: Int?
        var verify_l4_checksums: Bool?
        var stage: [StageModel]?
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
            let field = try matchField(key)
            fields.append(FieldMatch(field, try pattern(s.match![key]!.text, for: field, key: key)))
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
        "tcp_flags": .tcpFlags, "dccp_type": .dccpType, "payload_length": .payloadLength,
    ]

    static func matchField(_ key: String) throws -> MatchField {
        if let f = fieldNames[key] { return f }
        if key.hasPrefix("payload["), key.hasSuffix("]") {
            let inner = key.dropFirst(8).dropLast().split(separator: ":")
            if inner.count == 2, let o = Int(inner[0]), let w = Int(inner[1]) { return .payloadWord(offset: o, width: w) }
        }
        throw ProgramError("unknown match field \"\(key)\" (known: \(fieldNames.keys.sorted().joined(separator: ", ")), payload[OFFSET:WIDTH])")
    }

    static let protocolNames: [String: UInt64] = ["icmp": 1, "tcp": 6, "udp": 17, "dccp": 33]

    static func number(_ s: Substring, for field: MatchField) -> UInt64? {
        let t = s.trimmingCharacters(in: .whitespaces)
        if field == .ipProtocol, let p = protocolNames[t.lowercased()] { return p }
        if field == .sourceAddress || field == .destinationAddress, let a = IPv4Address(t) { return UInt64(a.value) }
        if t.hasPrefix("0x") { return UInt64(t.dropFirst(2), radix: 16) }
        return UInt64(t)
    }

    static func pattern(_ text: String, for field: MatchField, key: String) throws -> FieldPattern {
        let bad = ProgramError("cannot read \(key) = \"\(text)\" (a number, LOW-HIGH, VALUE/PREFIXLEN, VALUE/0xMASK or *)")
        if text == "*" { return .any }
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
        let limit: UInt64 = field.bitWidth == 64 ? .max : (1 << UInt64(field.bitWidth)) - 1
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
}
