/// memcached's text protocol (protocol.txt, "Commands"): retrieval (get, gets, gat,
/// gats), storage (set, add, replace, append, prepend, cas), delete, incr/decr, touch,
/// flush_all, stats, version, verbosity, quit, and the meta commands (`MetaProtocol`). Replies are memcached's, byte for byte,
/// so its clients and memccapable work unchanged.
enum TextProtocol {
    static let maxKeyLength = 250
    static let maxTokens = 24

    /// A command line split at spaces: token i is `line[starts[i]..<ends[i]]`. The
    /// boundaries live in the session's reused arrays.
    struct Tokens {
        let starts: [Int]
        let ends: [Int]
        var count: Int { starts.count }

        init(_ b: UnsafeRawBufferPointer, _ from: Int, _ to: Int, in s: Session) {
            s.tokenStarts.removeAll(keepingCapacity: true)
            s.tokenEnds.removeAll(keepingCapacity: true)
            var i = from
            while i < to && s.tokenStarts.count < TextProtocol.maxTokens {
                while i < to && b[i] == 0x20 { i += 1 }
                if i == to { break }
                let start = i
                while i < to && b[i] != 0x20 { i += 1 }
                s.tokenStarts.append(start)
                s.tokenEnds.append(i)
            }
            starts = s.tokenStarts
            ends = s.tokenEnds
        }
    }

    /// Runs every complete command in the session's input that starts at or before
    /// input offset `through`.
    static func run(_ s: Session, _ ctx: KVSContext, through: Int = .max) {
        s.input.withUnsafeBytes { b in
            while !s.closing {
                if s.swallow > 0 {
                    let n = min(s.swallow, s.unparsed)
                    s.consumed += n
                    s.swallow -= n
                    if s.swallow > 0 { break }
                }
                guard s.unparsed > 0, s.consumed <= through else { break }
                guard let nl = newline(b, from: s.consumed) else {
                    if s.unparsed > Session.maxLine {
                        s.write("CLIENT_ERROR line too long\r\n")
                        ctx.countError()
                        s.closing = true
                    }
                    break
                }
                let lineEnd = nl > s.consumed && b[nl - 1] == 0x0D ? nl - 1 : nl
                let t = Tokens(b, s.consumed, lineEnd, in: s)
                guard t.count > 0 else {
                    s.write("ERROR\r\n")
                    s.consumed = nl + 1
                    continue
                }
                if !execute(s, ctx, b, t, dataStart: nl + 1) { break }  // waits for a value's bytes
            }
        }
        s.compact()
    }

    @inline(__always) static func newline(_ b: UnsafeRawBufferPointer, from: Int) -> Int? {
        var i = from
        while i < b.count {
            if b[i] == 0x0A { return i }
            i += 1
        }
        return nil
    }

    static func equals(_ b: UnsafeRawBufferPointer, _ t: Tokens, _ i: Int, _ word: StaticString) -> Bool {
        let n = t.ends[i] - t.starts[i]
        guard n == word.utf8CodeUnitCount else { return false }
        return word.withUTF8Buffer { w in
            for k in 0..<n where b[t.starts[i] + k] != w[k] { return false }
            return true
        }
    }

    static func token(_ b: UnsafeRawBufferPointer, _ t: Tokens, _ i: Int) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: b[t.starts[i]..<t.ends[i]])
    }

    static func number(_ b: UnsafeRawBufferPointer, _ t: Tokens, _ i: Int) -> UInt64? {
        guard i < t.count else { return nil }
        return Partition.parseDecimal(token(b, t, i))
    }

    /// A signed decimal (exptime may be negative).
    static func signed(_ b: UnsafeRawBufferPointer, _ t: Tokens, _ i: Int) -> Int64? {
        guard i < t.count else { return nil }
        let tok = token(b, t, i)
        if tok.first == 0x2D {
            guard let v = Partition.parseDecimal(UnsafeRawBufferPointer(rebasing: tok.dropFirst())), v <= UInt64(Int64.max) else { return nil }
            return -Int64(v)
        }
        guard let v = Partition.parseDecimal(tok), v <= UInt64(Int64.max) else { return nil }
        return Int64(v)
    }

    static func noreply(_ b: UnsafeRawBufferPointer, _ t: Tokens, at i: Int) -> Bool {
        i < t.count && equals(b, t, i, "noreply")
    }

    static func badFormat(_ s: Session, _ ctx: KVSContext) {
        s.write("CLIENT_ERROR bad command line format\r\n")
        ctx.countError()
    }

    /// Runs one command; false if it needs more input (nothing consumed).
    static func execute(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens, dataStart: Int) -> Bool {
        let store = ctx.store
        func consumeLine() { s.consumed = dataStart; s.commands += 1 }
        let c = t.ends[0] - t.starts[0]
        let first = b[t.starts[0]]

        if c == 2 && first == 0x6D {  // "m?": meta commands
            return MetaProtocol.execute(s, ctx, b, t, dataStart: dataStart)
        }

        // Retrieval: get, gets, gat, gats.
        if equals(b, t, 0, "get") || equals(b, t, 0, "gets") || equals(b, t, 0, "gat") || equals(b, t, 0, "gats") {
            consumeLine()
            let touching = first == 0x67 && b[t.starts[0] + 1] == 0x61  // "ga…"
            let withCas = b[t.ends[0] - 1] == 0x73  // "…s"
            var firstKey = 1
            var expiry: UInt32 = 0
            if touching {
                guard let e = signed(b, t, 1) else { badFormat(s, ctx); return true }
                expiry = store.clock.expiry(e)
                firstKey = 2
            }
            guard t.count > firstKey else { s.write("ERROR\r\n"); ctx.countError(); return true }
            for i in firstKey..<t.count {
                let key = token(b, t, i)
                guard key.count <= maxKeyLength else { badFormat(s, ctx); return true }
                let h = s.hash(key)
                store.withPartition(h) { p in
                    guard let it = touching ? p.touch(key, hash: h, expiry: expiry) : p.get(key, hash: h) else { return }
                    if touching { p.stats.add(.cmdGet); p.stats.add(.getHits) }
                    let start = s.output.count
                    defer {
                        // A hot single-key GET of a non-expiring item: install its reply for
                        // the pipeline (under the partition, so no write can interleave).
                        if let table = store.replyTable, !touching, !withCas, t.count == 2, it.expiry == 0, table.isHot(hash: h) {
                            let reply = Array(s.output[start...]) + Array("END\r\n".utf8)
                            reply.withUnsafeBytes { _ = table.install(hash: h, key: key, reply: $0) }
                        }
                    }
                    s.write("VALUE ")
                    s.write(key)
                    s.output.append(0x20)
                    s.write(number: it.flags)
                    s.output.append(0x20)
                    s.write(number: it.valueLength)
                    if withCas {
                        s.output.append(0x20)
                        s.write(number: it.cas)
                    }
                    s.write("\r\n")
                    s.write(UnsafeRawBufferPointer(it.value))
                    s.write("\r\n")
                }
            }
            s.write("END\r\n")
            return true
        }

        // Storage: set, add, replace, append, prepend, cas.
        let mode: StoreMode?
        switch c {
        case 3 where equals(b, t, 0, "set"): mode = .set
        case 3 where equals(b, t, 0, "add"): mode = .add
        case 3 where equals(b, t, 0, "cas"): mode = .cas(0)
        case 7 where equals(b, t, 0, "replace"): mode = .replace
        case 7 where equals(b, t, 0, "prepend"): mode = .prepend
        case 6 where equals(b, t, 0, "append"): mode = .append
        default: mode = nil
        }
        if var mode {
            let isCas = mode == .cas(0)
            let needed = isCas ? 6 : 5
            guard t.count >= needed, t.count <= needed + 1, t.ends[1] - t.starts[1] <= maxKeyLength,
                  let flags = number(b, t, 2), flags <= UInt64(UInt32.max), let exptime = signed(b, t, 3),
                  let length = number(b, t, 4), length <= UInt64(Int32.max) else {
                consumeLine()
                badFormat(s, ctx)
                // The client will send a data block we cannot size: end the session.
                s.closing = true
                return true
            }
            if isCas {
                guard let unique = number(b, t, 5) else { consumeLine(); badFormat(s, ctx); s.closing = true; return true }
                mode = .cas(unique)
            }
            let quiet = noreply(b, t, at: needed)
            let count = Int(length)
            if count > store.maxItemSize {
                consumeLine()
                s.swallow = count + 2
                s.write("SERVER_ERROR object too large for cache\r\n")
                return true
            }
            guard b.count - dataStart >= count + 2 else { return false }  // wait for the value
            s.consumed = dataStart + count + 2
            s.commands += 1
            guard b[dataStart + count] == 0x0D, b[dataStart + count + 1] == 0x0A else {
                s.write("CLIENT_ERROR bad data chunk\r\n")
                ctx.countError()
                return true
            }
            let key = token(b, t, 1)
            let h = s.hash(key)
            let value = UnsafeRawBufferPointer(rebasing: b[dataStart..<(dataStart + count)])
            let result = store.withPartition(h) { p in
                p.store(mode, key: key, hash: h, flags: UInt32(flags), expiry: store.clock.expiry(exptime), value: value)
            }
            if quiet { return true }
            switch result {
            case .stored: s.write("STORED\r\n")
            case .notStored: s.write("NOT_STORED\r\n")
            case .exists: s.write("EXISTS\r\n")
            case .notFound: s.write("NOT_FOUND\r\n")
            case .tooLarge: s.write("SERVER_ERROR object too large for cache\r\n")
            case .outOfMemory: s.write("SERVER_ERROR out of memory storing object\r\n")
            }
            return true
        }

        consumeLine()
        if equals(b, t, 0, "delete") {
            // "delete <key> [0] [noreply]": memcached still accepts a zero time.
            var quietAt = 2
            if t.count > 2 && equals(b, t, 2, "0") { quietAt = 3 }
            guard t.count >= 2, t.count <= quietAt + 1, t.ends[1] - t.starts[1] <= maxKeyLength,
                  t.count == quietAt || noreply(b, t, at: quietAt) else {
                s.write("CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
                ctx.countError()
                return true
            }
            let key = token(b, t, 1)
            let h = s.hash(key)
            let deleted = store.withPartition(h) { $0.delete(key, hash: h) }
            if !noreply(b, t, at: quietAt) { s.write(deleted ? "DELETED\r\n" : "NOT_FOUND\r\n") }
        } else if equals(b, t, 0, "incr") || equals(b, t, 0, "decr") {
            guard t.count == 3 || t.count == 4, t.ends[1] - t.starts[1] <= maxKeyLength else { badFormat(s, ctx); return true }
            guard let amount = number(b, t, 2) else {
                s.write("CLIENT_ERROR invalid numeric delta argument\r\n")
                ctx.countError()
                return true
            }
            let key = token(b, t, 1)
            let h = s.hash(key)
            let r = store.withPartition(h) { $0.delta(key, hash: h, increment: first == 0x69, by: amount) }
            if noreply(b, t, at: 3) { return true }
            switch r {
            case .value(let v, _): s.write(number: v); s.write("\r\n")
            case .notFound, .exists: s.write("NOT_FOUND\r\n")
            case .nonNumeric: s.write("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
            }
        } else if equals(b, t, 0, "touch") {
            guard t.count == 3 || t.count == 4, let e = signed(b, t, 2) else { badFormat(s, ctx); return true }
            let key = token(b, t, 1)
            let h = s.hash(key)
            let touched = store.withPartition(h) { $0.touch(key, hash: h, expiry: store.clock.expiry(e)) != nil }
            if !noreply(b, t, at: 3) { s.write(touched ? "TOUCHED\r\n" : "NOT_FOUND\r\n") }
        } else if equals(b, t, 0, "flush_all") {
            var delay: UInt64 = 0
            var quietAt = 1
            if t.count > 1 && !noreply(b, t, at: 1) {
                guard let d = number(b, t, 1), d <= UInt64(UInt32.max) else { badFormat(s, ctx); return true }
                delay = d
                quietAt = 2
            }
            store.flushAll(delaySeconds: UInt32(delay))
            if !noreply(b, t, at: quietAt) { s.write("OK\r\n") }
        } else if equals(b, t, 0, "version") {
            s.write("VERSION \(KVSContext.version)\r\n")  // memcached 1.6 ignores extra tokens here
        } else if equals(b, t, 0, "verbosity") {
            // As memcached: a trailing noreply silences even a malformed verbosity.
            let quiet = noreply(b, t, at: t.count - 1)
            if t.count >= 2, let v = number(b, t, 1) { ctx.verbosity.store(Int(min(v, 10)), ordering: .relaxed) }
            else if !quiet { s.write("ERROR\r\n"); return true }
            if !quiet { s.write("OK\r\n") }
        } else if equals(b, t, 0, "quit") {
            s.closing = true
        } else if equals(b, t, 0, "stats") {
            stats(s, ctx, b, t)
        } else {
            s.write("ERROR\r\n")
            ctx.countError()
        }
        return true
    }

    static func stats(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens) {
        let lines: [(String, String)]
        if t.count == 1 {
            lines = ctx.generalStats()
        } else if equals(b, t, 1, "items") {
            lines = ctx.itemStats()
        } else if equals(b, t, 1, "slabs") || equals(b, t, 1, "segments") {
            lines = ctx.segmentStats()
        } else if equals(b, t, 1, "settings") {
            lines = ctx.settings
        } else if equals(b, t, 1, "steering") {
            lines = ctx.steeringStats()
        } else if equals(b, t, 1, "reset") {
            ctx.resetStats()
            s.write("RESET\r\n")
            return
        } else {
            s.write("ERROR\r\n")
            return
        }
        for (k, v) in lines { s.write("STAT \(k) \(v)\r\n") }
        s.write("END\r\n")
    }
}
