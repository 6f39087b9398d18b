/// memcached's binary protocol: 24-byte headers, opaque echoed back, quiet variants
/// that answer only on error (and GetQ/GetKQ only on a hit), NOOP as the batch fence.
enum BinaryProtocol {
    static let headerSize = 24
    static let requestMagic: UInt8 = 0x80
    static let responseMagic: UInt8 = 0x81
    /// Bodies above this end the session (a header that claims more is garbage).
    static let maxBody = 64 << 20

    enum Status: UInt16 {
        case ok = 0, keyNotFound = 1, keyExists = 2, valueTooLarge = 3, invalidArguments = 4
        case notStored = 5, nonNumeric = 6, unknownCommand = 0x81, outOfMemory = 0x82
    }

    /// Opcodes and what they are.
    enum Op: UInt8 {
        case get = 0x00, set = 0x01, add = 0x02, replace = 0x03, delete = 0x04, increment = 0x05
        case decrement = 0x06, quit = 0x07, flush = 0x08, getQ = 0x09, noop = 0x0A, version = 0x0B
        case getK = 0x0C, getKQ = 0x0D, append = 0x0E, prepend = 0x0F, stat = 0x10, setQ = 0x11
        case addQ = 0x12, replaceQ = 0x13, deleteQ = 0x14, incrementQ = 0x15, decrementQ = 0x16
        case quitQ = 0x17, flushQ = 0x18, appendQ = 0x19, prependQ = 0x1A, verbosity = 0x1B
        case touch = 0x1C, gat = 0x1D, gatQ = 0x1E, gatK = 0x23, gatKQ = 0x24

        var isQuiet: Bool {
            switch self {
            case .getQ, .getKQ, .setQ, .addQ, .replaceQ, .deleteQ, .incrementQ, .decrementQ, .quitQ,
                 .flushQ, .appendQ, .prependQ, .gatQ, .gatKQ: return true
            default: return false
            }
        }
    }

    struct Header {
        var opcode: UInt8
        var keyLength: Int
        var extrasLength: Int
        var bodyLength: Int
        var opaque: UInt32
        var cas: UInt64
    }

    /// Big-endian fields at offset `o` of `b` (which the caller checked holds them): one
    /// load and a byte swap each.
    @inline(__always) static func be16(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt16 {
        UInt16(bigEndian: b.loadUnaligned(fromByteOffset: o, as: UInt16.self))
    }
    @inline(__always) static func be32(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt32 {
        UInt32(bigEndian: b.loadUnaligned(fromByteOffset: o, as: UInt32.self))
    }
    @inline(__always) static func be64(_ b: UnsafeRawBufferPointer, _ o: Int) -> UInt64 {
        UInt64(bigEndian: b.loadUnaligned(fromByteOffset: o, as: UInt64.self))
    }

    /// Runs every complete request in the session's input that starts at or before
    /// input offset `through`.
    static func run(_ s: Session, _ ctx: KVSContext, through: Int = .max) {
        s.input.withUnsafeBytes { b in
            while !s.closing && s.unparsed >= headerSize && s.consumed <= through && s.output.count < s.outputBudget {
                let o = s.consumed
                guard b[o] == requestMagic else {
                    ctx.countError()
                    s.closing = true  // not a request: the stream cannot be resynchronised
                    break
                }
                let h = Header(opcode: b[o + 1], keyLength: Int(be16(b, o + 2)), extrasLength: Int(b[o + 4]),
                               bodyLength: Int(be32(b, o + 8)), opaque: be32(b, o + 12), cas: be64(b, o + 16))
                guard h.bodyLength <= maxBody, h.keyLength + h.extrasLength <= h.bodyLength else {
                    // A body we will not buffer, or one its key and extras do not fit in
                    // (memcached's answer to that), and the session ends.
                    if h.bodyLength > maxBody { respond(s, h, .invalidArguments) }
                    else { respond(s, h, .unknownCommand, text: "Unknown command") }
                    ctx.countError()
                    s.closing = true
                    break
                }
                guard s.unparsed >= headerSize + h.bodyLength else { break }
                let body = UnsafeRawBufferPointer(rebasing: b[(o + headerSize)..<(o + headerSize + h.bodyLength)])
                s.consumed = o + headerSize + h.bodyLength
                s.commands += 1
                let replyStart = s.output.count
                execute(s, ctx, h, body)
                if ctx.logs(3) {
                    let status = s.output.count >= replyStart + headerSize ? UInt16(s.output[replyStart + 6]) << 8 | UInt16(s.output[replyStart + 7]) : nil
                    let outcome = status.map { "status 0x\(String($0, radix: 16))" } ?? "no reply"
                    ctx.logger.info("<\(s.logID) binary opcode 0x\(String(h.opcode, radix: 16)) key \(h.keyLength) B body \(h.bodyLength) B, \(outcome)")
                }
            }
        }
        s.compact()
    }

    /// The message of a key not found (a GETK miss carries the key instead), as memcached words it.
    static let notFound: StaticString = "Not found"

    /// Writes a response header (24 bytes, big-endian fields) at `p`.
    static func writeResponseHeader(at p: UnsafeMutableRawPointer, opcode: UInt8, keyLength: Int, extrasLength: Int,
                                    status: Status, bodyLength: Int, opaque: UInt32, cas: UInt64) {
        p.storeBytes(of: responseMagic, as: UInt8.self)
        p.storeBytes(of: opcode, toByteOffset: 1, as: UInt8.self)
        p.storeBytes(of: UInt16(keyLength).bigEndian, toByteOffset: 2, as: UInt16.self)
        p.storeBytes(of: UInt8(extrasLength), toByteOffset: 4, as: UInt8.self)
        p.storeBytes(of: 0, toByteOffset: 5, as: UInt8.self)
        p.storeBytes(of: status.rawValue.bigEndian, toByteOffset: 6, as: UInt16.self)
        p.storeBytes(of: UInt32(bodyLength).bigEndian, toByteOffset: 8, as: UInt32.self)
        p.storeBytes(of: opaque.bigEndian, toByteOffset: 12, as: UInt32.self)
        p.storeBytes(of: cas.bigEndian, toByteOffset: 16, as: UInt64.self)
    }

    /// Writes a response: header, then the optional flags extras (GET), key, value and
    /// message text, straight into the session's output.
    static func respond(_ s: Session, _ h: Header, _ status: Status, cas: UInt64 = 0, flags: UInt32? = nil,
                        key: UnsafeRawBufferPointer? = nil, value: UnsafeRawBufferPointer? = nil, number: UInt64? = nil,
                        text: StaticString? = nil) {
        let keyCount = key?.count ?? 0
        let extrasCount = flags == nil ? 0 : 4
        let valueCount = (value?.count ?? 0) + (number == nil ? 0 : 8) + (text?.utf8CodeUnitCount ?? 0)
        // The header and the flags are written in place, then appended at once (one
        // capacity check, not one per byte).
        var head: (UInt64, UInt64, UInt64, UInt32) = (0, 0, 0, 0)
        withUnsafeMutableBytes(of: &head) { b in
            writeResponseHeader(at: b.baseAddress!, opcode: h.opcode, keyLength: keyCount, extrasLength: extrasCount,
                                status: status, bodyLength: extrasCount + keyCount + valueCount, opaque: h.opaque, cas: cas)
            if let flags { b.storeBytes(of: flags.bigEndian, toByteOffset: headerSize, as: UInt32.self) }
            s.write(UnsafeRawBufferPointer(rebasing: b[..<(headerSize + extrasCount)]))
        }
        if let key { s.write(key) }
        if let value { s.write(value) }
        if let number { s.writeBE64(number) }
        if let text { s.write(text) }
    }

    static func execute(_ s: Session, _ ctx: KVSContext, _ h: Header, _ body: UnsafeRawBufferPointer) {
        let store = ctx.store
        guard let op = Op(rawValue: h.opcode) else {
            respond(s, h, .unknownCommand, text: "Unknown command")
            return
        }
        let extras = UnsafeRawBufferPointer(rebasing: body[0..<h.extrasLength])
        let key = UnsafeRawBufferPointer(rebasing: body[h.extrasLength..<(h.extrasLength + h.keyLength)])
        let value = UnsafeRawBufferPointer(rebasing: body[(h.extrasLength + h.keyLength)...])
        /// As memcached: a request with the wrong extras, key or value for its opcode is
        /// answered "Invalid arguments" and ends the connection.
        func invalid() {
            respond(s, h, .invalidArguments, text: "Invalid arguments")
            ctx.countError()
            s.closing = true
        }
        let needsKey: Bool
        switch op {
        case .noop, .version, .quit, .quitQ, .flush, .flushQ, .stat, .verbosity: needsKey = false
        default: needsKey = true
        }
        if needsKey && (key.isEmpty || key.count > TextProtocol.maxKeyLength) { invalid(); return }
        // The shapes memcached accepts for the keyless opcodes.
        switch op {
        case .noop, .version, .quit, .quitQ: if h.bodyLength != 0 { invalid(); return }
        case .flush, .flushQ: if !key.isEmpty || !value.isEmpty { invalid(); return }
        case .stat: if !extras.isEmpty || !value.isEmpty { invalid(); return }
        case .verbosity:
            // memcached 1.6.18 has no handler for it: Unknown command, whatever its shape.
            respond(s, h, .unknownCommand, text: "Unknown command")
            return
        default: break
        }
        let hash = needsKey ? s.hash(key) : 0

        switch op {
        case .get, .getQ, .getK, .getKQ, .gat, .gatQ, .gatK, .gatKQ:
            let touching = op == .gat || op == .gatQ || op == .gatK || op == .gatKQ
            guard extras.count == (touching ? 4 : 0), touching || value.isEmpty else { invalid(); return }
            let withKey = op == .getK || op == .getKQ || op == .gatK || op == .gatKQ
            let found: Bool = store.withPartition(hash) { p in
                let item = touching ? p.touch(key, hash: hash, expiry: store.clock.expiry(Int64(be32(extras, 0))))
                                    : p.get(key, hash: hash)
                guard let it = item else { return false }
                respond(s, h, .ok, cas: it.cas, flags: it.flags, key: withKey ? key : nil,
                        value: UnsafeRawBufferPointer(it.value))
                return true
            }
            if !found && !op.isQuiet { respond(s, h, .keyNotFound, key: withKey ? key : nil, text: withKey ? nil : notFound) }

        case .set, .setQ, .add, .addQ, .replace, .replaceQ, .append, .appendQ, .prepend, .prependQ:
            let isConcat = op == .append || op == .appendQ || op == .prepend || op == .prependQ
            guard extras.count == (isConcat ? 0 : 8) else { invalid(); return }
            var mode: StoreMode
            switch op {
            case .set, .setQ: mode = h.cas != 0 ? .cas(h.cas) : .set
            case .add, .addQ: mode = h.cas != 0 ? .cas(h.cas) : .add  // memcached: a CAS on a missing item is a miss
            case .replace, .replaceQ: mode = h.cas != 0 ? .cas(h.cas) : .replace
            case .append, .appendQ: mode = .append
            default: mode = .prepend
            }
            let flags = isConcat ? 0 : be32(extras, 0)
            let exptime = isConcat ? 0 : Int64(be32(extras, 4))
            let r = store.withPartition(hash) { p in
                p.store(mode, key: key, hash: hash, flags: flags, expiry: store.clock.expiry(exptime), value: value)
            }
            switch r {
            case .stored(let cas): if !op.isQuiet { respond(s, h, .ok, cas: cas) }
            case .notStored:
                if mode == .add { respond(s, h, .keyExists, text: "Data exists for key.") }
                else if isConcat { respond(s, h, .notStored, text: "Not stored.") }
                else { respond(s, h, .keyNotFound, text: notFound) }
            case .exists: respond(s, h, .keyExists, text: "Data exists for key.")
            case .notFound: respond(s, h, .keyNotFound, text: notFound)
            case .tooLarge: ctx.count(.storeTooLarge); respond(s, h, .valueTooLarge, text: "Too large.")
            case .outOfMemory: ctx.count(.storeNoMemory); respond(s, h, .outOfMemory, text: "Out of memory")
            }

        case .delete, .deleteQ:
            guard extras.isEmpty, value.isEmpty else { invalid(); return }
            // With a CAS, only that version of the item is deleted (memcached).
            let status: Status = store.withPartition(hash) { p in
                if h.cas != 0, let (_, it) = p.lookup(key, hash), it.cas != h.cas { return .keyExists }
                return p.delete(key, hash: hash) ? .ok : .keyNotFound
            }
            switch status {
            case .ok: if !op.isQuiet { respond(s, h, .ok) }
            case .keyExists: respond(s, h, .keyExists, text: "Data exists for key.")
            default: respond(s, h, .keyNotFound, text: notFound)
            }

        case .increment, .incrementQ, .decrement, .decrementQ:
            guard extras.count == 20, value.isEmpty else { invalid(); return }
            let amount = be64(extras, 0), initial = be64(extras, 8), exptime = be32(extras, 16)
            let create = exptime == 0xFFFF_FFFF ? nil : (initial, store.clock.expiry(Int64(exptime)))
            let up = op == .increment || op == .incrementQ
            let r = store.withPartition(hash) { $0.delta(key, hash: hash, increment: up, by: amount, initial: create, cas: h.cas) }
            switch r {
            case .value(let v, let cas): if !op.isQuiet { respond(s, h, .ok, cas: cas, number: v) }
            case .notFound: respond(s, h, .keyNotFound, text: notFound)
            case .nonNumeric: respond(s, h, .nonNumeric, text: "Non-numeric server-side value for incr or decr")
            case .exists: respond(s, h, .keyExists, text: "Data exists for key.")
            }

        case .touch:
            guard extras.count == 4 else { invalid(); return }
            // As memcached: a touched item's flags and CAS come back.
            let found: Bool = store.withPartition(hash) { p in
                guard let it = p.touch(key, hash: hash, expiry: store.clock.expiry(Int64(be32(extras, 0)))) else { return false }
                respond(s, h, .ok, cas: it.cas, flags: it.flags)
                return true
            }
            if !found { respond(s, h, .keyNotFound, text: notFound) }

        case .flush, .flushQ:
            guard extras.count == 0 || extras.count == 4 else { invalid(); return }
            ctx.count(.flushCommands)
            guard ctx.flushEnabled else { respond(s, h, .invalidArguments, text: "Flush disabled"); return }
            store.flushAll(exptime: extras.count == 4 ? Int64(Int32(bitPattern: be32(extras, 0))) : 0)
            if !op.isQuiet { respond(s, h, .ok) }

        case .noop: respond(s, h, .ok)
        case .version: Array(KVSContext.version.utf8).withUnsafeBytes { respond(s, h, .ok, value: $0) }
        case .verbosity: break  // answered above
        case .quit: respond(s, h, .ok); s.closing = true
        case .quitQ: s.closing = true

        case .stat:
            var lines: [(String, String)]
            let name = String(decoding: key, as: UTF8.self)
            if key.isEmpty { lines = ctx.generalStats() }
            else if name == "reset" { ctx.resetStats(); lines = [] }
            else if name.hasPrefix("detail") {
                // memcached answers a bare end packet to "detail on"/"detail off".
                switch name {
                case "detail on": ctx.detailEnabled.store(true, ordering: .relaxed); lines = []
                case "detail off": ctx.detailEnabled.store(false, ordering: .relaxed); lines = []
                case "detail dump": lines = []
                default: respond(s, h, .keyNotFound, text: notFound); return
                }
            } else if let report = ctx.statsReport(name) { lines = report }
            else { respond(s, h, .keyNotFound, text: notFound); return }
            for (k, v) in lines {
                Array(k.utf8).withUnsafeBytes { kb in Array(v.utf8).withUnsafeBytes { respond(s, h, .ok, key: kb, value: $0) } }
            }
            respond(s, h, .ok)
        }
    }
}
