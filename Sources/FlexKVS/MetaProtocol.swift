/// memcached 1.6.18's meta commands (protocol.txt, "Meta Commands"): mg, ms, md, ma,
/// mn, me, with their replies byte for byte.
///
/// - Flags are single letters, each at most once, checked before anything runs: an
///   unknown letter is `CLIENT_ERROR invalid flag`, a repeated one `CLIENT_ERROR
///   duplicate flag` (md and ma say `invalid or duplicate flag` for every flag error),
///   a number that does not read is `bad token in command line format`, an opaque over
///   32 bytes `opaque token too long`. Errors ignore `q`; `q` silences only the nominal
///   reply (mg: EN, ms/md/ma: HD).
/// - Return flags come back in the order they were asked for; on a miss only `O` and
///   `k` are echoed.
/// - Keys may be base64 (`b`): stored decoded, returned encoded with ` b` after them.
/// - Serve-stale: `md k I` marks an item stale (new CAS, optional new TTL) instead of
///   deleting it; `mg` then answers with `X`, and the first client also with `W` (the
///   win token to recache), later ones with `Z`. `mg k N<ttl>` creates an empty item on
///   a miss and wins; `R<ttl>` wins when the item's TTL is below it. `ms ... I` with a
///   CAS older than the item's stores the value still marked stale.
enum MetaProtocol {
    /// Most words a meta command may have (memcached's MFLAG_MAX_OPT_LENGTH, with the
    /// terminal token).
    static let maxTokens = 20
    static let maxOpaque = 32

    /// A request's flags, parsed and checked (memcached's `_meta_flag_preparse`).
    struct Options {
        var value = false, quiet = false, noUpdate = false, vivify = false, invalidate = false
        var hasCas = false, newTTL = false, binaryKey = false, reportsAccess = false
        var mode: UInt8 = 0
        var exptime: Int32 = 0, vivifyExptime: Int32 = 0, recacheExptime: Int32 = 0
        var clientFlags: UInt32 = 0, cas: UInt64 = 0, delta: UInt64 = 1, initial: UInt64 = 0
        /// The key, base64-decoded when `b` was given.
        var decodedKey: [UInt8]? = nil
    }

    /// Parses the flags from word `from` on; an error line on failure. As memcached's,
    /// the last error's message is the one sent (a bad `F` keeps the message as it is).
    static func parse(_ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens, from: Int) -> Result<Options, MetaError> {
        var o = Options()
        var seen = Set<UInt8>()
        var failure: MetaError? = nil
        for i in from..<t.count {
            let letter = b[t.starts[i]]
            let argument = UnsafeRawBufferPointer(rebasing: b[(t.starts[i] + 1)..<t.ends[i]])
            guard letter < 127, seen.insert(letter).inserted else { return .failure(.duplicate) }
            func signed() -> Int32? {
                guard let v = DecimalText.signed32(argument) else { failure = .badToken; return nil }
                return v
            }
            switch letter {
            case 0x62:  // b
                if let key = Base64.decode(TextProtocol.token(b, t, 1)) { o.decodedKey = key } else { failure = .decoding }
                o.binaryKey = true
            case 0x4E: o.vivify = true; if let v = signed() { o.vivifyExptime = v }  // N
            case 0x54: o.newTTL = true; if let v = signed() { o.exptime = v }  // T
            case 0x52: if let v = signed() { o.recacheExptime = v }  // R
            case 0x6C, 0x68: o.reportsAccess = true  // l, h
            case 0x4F, 0x50, 0x4C, 0x6B, 0x73, 0x74, 0x63, 0x66: break  // O P L k s t c f
            case 0x76: o.value = true  // v
            case 0x75: o.noUpdate = true  // u
            case 0x71: o.quiet = true  // q
            case 0x46:  // F
                if let v = DecimalText.unsigned32(argument) { o.clientFlags = v } else { failure = failure ?? .format }
            case 0x43:  // C
                if let v = DecimalText.unsigned64(argument) { o.cas = v; o.hasCas = true } else { failure = .badToken }
            case 0x4D:  // M
                if argument.count == 1 { o.mode = argument[0] } else { failure = .modeLength }
            case 0x4A:  // J
                if let v = DecimalText.unsigned64(argument) { o.initial = v } else { failure = .initial }
            case 0x44:  // D
                if let v = DecimalText.unsigned64(argument) { o.delta = v } else { failure = .delta }
            case 0x49: o.invalidate = true  // I
            default: return .failure(.invalidFlag)
            }
        }
        if let failure { return .failure(failure) }
        return .success(o)
    }

    enum MetaError: Error {
        case format, duplicate, invalidFlag, badToken, decoding, modeLength, initial, delta, opaque
        var line: StaticString {
            switch self {
            case .format: return "CLIENT_ERROR bad command line format\r\n"
            case .duplicate: return "CLIENT_ERROR duplicate flag\r\n"
            case .invalidFlag: return "CLIENT_ERROR invalid flag\r\n"
            case .badToken: return "CLIENT_ERROR bad token in command line format\r\n"
            case .decoding: return "CLIENT_ERROR error decoding key\r\n"
            case .modeLength: return "CLIENT_ERROR incorrect length for M token\r\n"
            case .initial: return "CLIENT_ERROR invalid numeric initial value\r\n"
            case .delta: return "CLIENT_ERROR invalid numeric delta value\r\n"
            case .opaque: return "CLIENT_ERROR opaque token too long\r\n"
            }
        }
    }

    /// Writes ` k<key>` (base64 and ` b` for a binary key).
    static func writeKey(_ s: Session, _ key: UnsafeRawBufferPointer, binary: Bool) {
        s.write(" k")
        if binary {
            Base64.encode(key, into: &s.output)
            s.write(" b")
        } else {
            s.write(key)
        }
    }

    /// Echoes `O` and `k` (what a miss, or a reply without an item, returns).
    static func writeEchoes(_ s: Session, _ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens, key: UnsafeRawBufferPointer,
                            binary: Bool) {
        for i in 2..<t.count {
            switch b[t.starts[i]] {
            case 0x4F: s.output.append(0x20); s.write(TextProtocol.token(b, t, i))
            case 0x6B: writeKey(s, key, binary: binary)
            default: break
            }
        }
    }

    /// Seconds an item has left, as memcached's `t` (-1: never expires).
    /// (An item given a TTL in the past by this very command prints memcached's
    /// wrapped-around difference.)
    static func writeTTL(_ s: Session, _ it: ItemView, now: UInt32) {
        s.write(" t")
        if it.expiry == 0 { s.write("-1") } else { s.write(number: it.expiry &- now) }
    }

    /// Runs a meta command (first word "m?"). Returns false if it needs more input.
    static func execute(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens,
                        dataStart: Int) -> Bool {
        let command = b[t.starts[0] + 1]
        if command == 0x73 { return set(s, ctx, b, t, dataStart: dataStart) }
        s.consumed = dataStart
        s.commands += 1
        switch command {
        case 0x6E: s.write("MN\r\n")  // mn
        case 0x67, 0x64, 0x61:  // mg, md, ma
            guard t.ntokens >= 3 else { TextProtocol.error(s, ctx, false, "ERROR\r\n"); return true }
            guard TextProtocol.length(t, 1) <= TextProtocol.maxKeyLength else {
                TextProtocol.error(s, ctx, false, "CLIENT_ERROR bad command line format\r\n")
                return true
            }
            guard t.ntokens <= maxTokens, t.rest == nil else {
                TextProtocol.error(s, ctx, false, command == 0x67 ? "CLIENT_ERROR options flags are too long\r\n"
                                                                  : "CLIENT_ERROR options flags too long\r\n")
                return true
            }
            let options: Options
            switch parse(b, t, from: 2) {
            case .success(let o): options = o
            case .failure(let e):
                TextProtocol.error(s, ctx, false, command == 0x67 ? e.line : "CLIENT_ERROR invalid or duplicate flag\r\n")
                return true
            }
            let start = s.output.count
            let ok: Bool
            if let decoded = options.decodedKey {
                ok = decoded.withUnsafeBytes { key in run(command, s, ctx, b, t, options, key: key) }
            } else {
                ok = run(command, s, ctx, b, t, options, key: TextProtocol.token(b, t, 1))
            }
            if !ok {  // an over-long opaque: only the error is sent
                s.output.truncate(to: start)
                TextProtocol.error(s, ctx, false, MetaError.opaque.line)
            }
        case 0x65: debug(s, ctx, b, t)  // me
        default: TextProtocol.error(s, ctx, false, "ERROR\r\n")
        }
        return true
    }

    /// Runs mg, md or ma on `key`; false if an opaque is too long. As memcached, md
    /// refuses such a request before acting, mg after fetching (and creating) the item,
    /// ma after changing it.
    static func run(_ command: UInt8, _ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens,
                    _ o: Options, key: UnsafeRawBufferPointer) -> Bool {
        let opaqueFits = !(2..<t.count).contains { b[t.starts[$0]] == 0x4F && TextProtocol.length(t, $0) > maxOpaque }
        switch command {
        case 0x67: get(s, ctx, b, t, o, key: key, opaqueFits: opaqueFits)
        case 0x64: if opaqueFits { delete(s, ctx, b, t, o, key: key) }
        default: return arithmetic(s, ctx, b, t, o, key: key, opaqueFits: opaqueFits)
        }
        return opaqueFits
    }

    // MARK: mg

    static func get(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens, _ o: Options,
                    key: UnsafeRawBufferPointer, opaqueFits: Bool) {
        let store = ctx.store
        let h = s.hash(key)
        store.withPartition(h) { p in
            let now = store.clock.seconds
            var found = p.lookup(key, h)?.1
            var created = false
            if found == nil && o.vivify {
                // An empty item stands in for the missing one; its creator wins the token.
                // (memcached does not mark a vivified item's key as binary: only ms does.)
                if case .stored = p.store(.add, key: key, hash: h, flags: 0, expiry: 0, value: UnsafeRawBufferPointer(start: nil, count: 0)) {
                    p.stats.add(.cmdSet, -1)
                    found = p.lookup(key, h)?.1
                    created = found != nil
                }
            }
            guard let it = found else {
                p.stats.add(o.newTTL ? .cmdTouch : .cmdGet)
                p.stats.add(o.newTTL ? .touchMisses : .getMisses)
                if o.quiet { return }
                s.write("EN")
                writeEchoes(s, b, t, key: key, binary: o.binaryKey)
                s.write("\r\n")
                return
            }
            let fetchedBefore = it.marks.contains(.fetched)
            // Flags that need the item before its access is recorded (memcached's
            // "locked" fetch) delay that to the end; others record it at once.
            let delayed = o.reportsAccess || o.vivify || o.newTTL || (2..<t.count).contains { b[t.starts[$0]] == 0x52 }
            if !o.noUpdate && !delayed { it.marks.insert(.fetched); it.marks.countRead() }
            guard opaqueFits else { return }
            var won = false
            var touched = false
            if o.value { s.write("VA "); s.write(number: it.valueLength) } else { s.write("HD") }
            for i in 2..<t.count {
                switch b[t.starts[i]] {
                case 0x54:  // T
                    touched = true
                    store.replyTable?.invalidate(hash: h, key: key)
                    it.expiry = store.clock.expiry(Int64(o.exptime))
                case 0x4E:  // N
                    if created {
                        it.expiry = store.clock.expiry(Int64(o.vivifyExptime))
                        won = true
                    }
                case 0x52:  // R
                    if !it.marks.contains(.tokenSent) && !created && it.expiry != 0
                        && it.expiry < store.clock.expiry(Int64(o.recacheExptime)) { won = true }
                case 0x73: s.write(" s"); s.write(number: it.valueLength)
                case 0x74: writeTTL(s, it, now: now)
                case 0x63: s.write(" c"); s.write(number: it.cas)
                case 0x66: s.write(" f"); s.write(number: it.flags)
                case 0x6C:  // seconds since it was stored (memcached: since its last access, bumped at most once a minute)
                    s.write(" l"); s.write(number: now &- store.clock.seconds(atServerNanos: it.storedAt))
                case 0x68: s.write(fetchedBefore ? " h1" : " h0")
                case 0x4F: s.output.append(0x20); s.write(TextProtocol.token(b, t, i))
                case 0x6B: writeKey(s, it.key, binary: it.marks.contains(.binaryKey))
                default: break
                }
            }
            if it.marks.contains(.tokenSent) { s.write(" Z") }
            if it.marks.contains(.stale) {
                s.write(" X")
                if !it.marks.contains(.tokenSent) { won = true }
            }
            if won {
                s.write(" W")
                it.marks.insert(.tokenSent)
            }
            s.write("\r\n")
            if o.value {
                s.write(UnsafeRawBufferPointer(it.value))
                s.write("\r\n")
            }
            if !o.noUpdate && delayed { it.marks.insert(.fetched); it.marks.countRead() }
            if touched {
                p.stats.add(.cmdTouch)
                p.stats.add(.touchHits)
            } else {
                p.stats.add(.cmdGet)
                p.stats.add(.getHits)
            }
        }
    }

    // MARK: ms

    /// `ms <key> <datalen> <flags>*` and its data block.
    static func set(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens, dataStart: Int) -> Bool {
        let store = ctx.store
        func lineOnly() { s.consumed = dataStart; s.commands += 1 }
        guard t.ntokens >= 3 else { lineOnly(); TextProtocol.error(s, ctx, false, "ERROR\r\n"); return true }
        guard TextProtocol.length(t, 1) <= TextProtocol.maxKeyLength, t.ntokens > 3,
              let length = TextProtocol.signed(b, t, 2), length >= 0, length <= Int32.max - 2 else {
            lineOnly()
            TextProtocol.error(s, ctx, false, "CLIENT_ERROR bad command line format\r\n")
            return true
        }
        guard t.ntokens <= maxTokens, t.rest == nil else {
            lineOnly()
            TextProtocol.error(s, ctx, false, "CLIENT_ERROR options flags too long\r\n")
            return true
        }
        let count = Int(length)
        /// A flag error: the data block is swallowed, the error always sent.
        func refuse(_ line: StaticString) -> Bool {
            lineOnly()
            s.swallow = count + 2
            TextProtocol.error(s, ctx, false, line)
            return true
        }
        let o: Options
        switch parse(b, t, from: 3) {
        case .success(let parsed): o = parsed
        case .failure(let e): return refuse(e.line)
        }
        for i in 3..<t.count where b[t.starts[i]] == 0x4F && TextProtocol.length(t, i) > maxOpaque {
            return refuse(MetaError.opaque.line)
        }
        var mode: StoreMode
        switch o.mode {
        case 0, 0x53: mode = .set  // S
        case 0x45: mode = .add  // E
        case 0x41: mode = .append  // A
        case 0x50: mode = .prepend  // P
        case 0x52: mode = .replace  // R
        default: return refuse("CLIENT_ERROR invalid mode for ms M token\r\n")
        }
        // As memcached: a CAS turns set and replace into a compare-and-swap.
        if o.hasCas && (mode == .set || mode == .replace) { mode = .cas(o.cas) }
        func withKey<T>(_ body: (UnsafeRawBufferPointer) -> T) -> T {
            if let k = o.decodedKey { return k.withUnsafeBytes(body) }
            return body(TextProtocol.token(b, t, 1))
        }
        guard withKey({ store.fits(keyLength: $0.count, flags: o.clientFlags, valueLength: count) }) else {
            ctx.count(.storeTooLarge)
            withKey { key in
                let h = s.hash(key)
                store.withPartition(h) { $0.discard(key, hash: h) }
            }
            return refuse("SERVER_ERROR object too large for cache\r\n")
        }
        guard b.count - dataStart >= count + 2 else { return false }
        s.consumed = dataStart + count + 2
        s.commands += 1
        guard b[dataStart + count] == 0x0D, b[dataStart + count + 1] == 0x0A else {
            TextProtocol.error(s, ctx, false, "CLIENT_ERROR bad data chunk\r\n")
            return true
        }
        let data = UnsafeRawBufferPointer(rebasing: b[dataStart..<(dataStart + count)])
        withKey { key in
            let h = s.hash(key)
            store.withPartition(h) { p in
                let r = p.store(mode, key: key, hash: h, flags: o.clientFlags, expiry: store.clock.expiry(Int64(o.exptime)),
                                value: data, requestCas: o.hasCas ? o.cas : 0, allowStale: o.invalidate,
                                marks: o.binaryKey ? [.binaryKey] : [])
                var cas: UInt64 = 0
                switch r {
                case .stored(let c):
                    if o.quiet { return }
                    cas = c
                    s.write("HD")
                case .exists: s.write("EX")
                case .notFound: s.write("NF")
                case .notStored: s.write("NS")
                case .tooLarge: ctx.count(.storeTooLarge); s.write("SERVER_ERROR object too large for cache\r\n"); return
                case .outOfMemory: ctx.count(.storeNoMemory); s.write("SERVER_ERROR out of memory storing object\r\n"); return
                }
                for i in 3..<t.count {
                    switch b[t.starts[i]] {
                    case 0x4F: s.output.append(0x20); s.write(TextProtocol.token(b, t, i))
                    case 0x6B: writeKey(s, key, binary: o.binaryKey)
                    case 0x63: s.write(" c"); s.write(number: cas)
                    default: break
                    }
                }
                s.write("\r\n")
            }
        }
        return true
    }

    // MARK: md

    static func delete(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens, _ o: Options,
                       key: UnsafeRawBufferPointer) {
        let store = ctx.store
        let h = s.hash(key)
        store.withPartition(h) { p in
            let status: StaticString
            if let (ref, it) = p.lookup(key, h) {
                if o.hasCas && it.cas != o.cas {
                    p.stats.add(.deleteMisses)
                    status = "EX"
                } else if o.invalidate {
                    // Marked stale, not deleted: the next reader is told to recache.
                    store.replyTable?.invalidate(hash: h, key: key)
                    if o.newTTL { it.expiry = store.clock.expiry(Int64(o.exptime)) }
                    it.marks.insert(.stale)
                    it.marks.remove(.tokenSent)
                    it.cas = p.nextCAS()
                    if o.quiet { return }
                    status = "HD"
                } else {
                    p.unlink(ref, hash: h)
                    p.stats.add(.deleteHits)
                    if o.quiet { return }
                    status = "HD"
                }
            } else {
                p.stats.add(.deleteMisses)
                status = "NF"
            }
            s.write(status)
            writeEchoes(s, b, t, key: key, binary: o.binaryKey)
            s.write("\r\n")
        }
    }

    // MARK: ma

    /// False if an opaque is too long (found, as memcached finds it, once the value
    /// has changed: the caller then sends only that error).
    static func arithmetic(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens, _ o: Options,
                           key: UnsafeRawBufferPointer, opaqueFits: Bool) -> Bool {
        let store = ctx.store
        let increment: Bool
        switch o.mode {
        case 0, 0x49, 0x2B: increment = true  // I, +
        case 0x44, 0x2D: increment = false  // D, -
        default:
            TextProtocol.error(s, ctx, false, "CLIENT_ERROR invalid mode for ma M token\r\n")
            return true
        }
        let h = s.hash(key)
        return store.withPartition(h) { p in
            var value: UInt64
            var created = false
            let result = p.delta(key, hash: h, increment: increment, by: o.delta, cas: o.hasCas ? o.cas : 0)
            switch result {
            case .value(let v, _):
                value = v
            case .nonNumeric:
                TextProtocol.error(s, ctx, false, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
                return true
            case .notFound where o.vivify:
                let text = Array(String(o.initial).utf8)
                guard case .stored = text.withUnsafeBytes({
                    p.store(.add, key: key, hash: h, flags: 0, expiry: 0, value: $0)
                }) else {
                    s.write("NS\r\n")
                    return true
                }
                p.stats.add(.cmdSet, -1)  // a vivified counter is not a set (memcached)
                value = o.initial
                created = true
            case .notFound, .exists:
                guard opaqueFits else { return false }
                s.write(result == .notFound ? "NF" : "EX")  // EX: the CAS did not match
                writeEchoes(s, b, t, key: key, binary: o.binaryKey)
                s.write("\r\n")
                return true
            }
            guard let (_, it) = p.lookup(key, h) else { return true }
            let start = s.output.count
            defer { if o.quiet && !created { s.output.truncate(to: start) } }  // q: nothing, but flags still act
            let digits = String(value)
            if o.value { s.write("VA "); s.write(number: digits.utf8.count) } else { s.write("HD") }
            for i in 2..<t.count {
                switch b[t.starts[i]] {
                case 0x63: s.write(" c"); s.write(number: it.cas)
                case 0x74: writeTTL(s, it, now: store.clock.seconds)
                case 0x54: it.expiry = store.clock.expiry(Int64(o.exptime))
                case 0x4E: if created { it.expiry = store.clock.expiry(Int64(o.vivifyExptime)) }
                case 0x4F: s.output.append(0x20); s.write(TextProtocol.token(b, t, i))
                case 0x6B: writeKey(s, key, binary: o.binaryKey)
                default: break
                }
            }
            if o.value { s.write("\r\n"); s.write(digits) }
            s.write("\r\n")
            return opaqueFits
        }
    }

    // MARK: me

    /// `me <key> [b]`: memcached's item debug line.
    static func debug(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens) {
        guard t.ntokens >= 3, TextProtocol.length(t, 1) <= TextProtocol.maxKeyLength else {
            TextProtocol.error(s, ctx, false, "CLIENT_ERROR bad command line format\r\n")
            return
        }
        var decoded: [UInt8]? = nil
        if t.count >= 3 && TextProtocol.equals(b, t, 2, "b") {
            guard let k = Base64.decode(TextProtocol.token(b, t, 1)) else {
                TextProtocol.error(s, ctx, false, "CLIENT_ERROR bad command line format\r\n")
                return
            }
            decoded = k
        }
        let store = ctx.store
        func run(_ key: UnsafeRawBufferPointer) {
            let h = s.hash(key)
            store.withPartition(h) { p in
                guard let (_, it) = p.lookup(key, h) else { s.write("EN\r\n"); return }
                let now = Int64(store.clock.seconds)
                s.write("ME ")
                if it.marks.contains(.binaryKey) { Base64.encode(it.key, into: &s.output) } else { s.write(it.key) }
                // memcached prints exp as now - expiry in 32 bits (negative while the item lives).
                s.write(" exp=\(it.expiry == 0 ? -1 : Int32(truncatingIfNeeded: now - Int64(it.expiry)))")
                s.write(" la="); s.write(number: UInt64(max(0, now - Int64(store.clock.seconds(atServerNanos: it.storedAt)))))
                s.write(" cas="); s.write(number: it.cas)
                s.write(it.marks.contains(.fetched) ? " fetch=yes" : " fetch=no")
                let size = SizeClasses.memcachedSize(keyLength: it.keyLength, flags: it.flags, valueLength: it.valueLength,
                                                     cas: store.configuration.casEnabled)
                s.write(" cls="); s.write(number: SizeClasses.classID(size: size))
                s.write(" size="); s.write(number: size)
                s.write("\r\n")
            }
        }
        if let decoded { decoded.withUnsafeBytes(run) } else { run(TextProtocol.token(b, t, 1)) }
    }
}
