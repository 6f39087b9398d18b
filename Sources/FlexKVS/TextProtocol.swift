#if canImport(Glibc)
import Glibc
#endif

/// memcached's text protocol (protocol.txt, "Commands"): retrieval (get, gets, gat,
/// gats), storage (set, add, replace, append, prepend, cas), delete, incr/decr, touch,
/// flush_all, stats, version, verbosity, cache_memlimit, lru_crawler, shutdown, quit,
/// and the meta commands (`MetaProtocol`).
///
/// Replies are memcached 1.6's byte for byte, and so is how a line is read, since
/// clients depend on it: a line splits at spaces into at most 23 words (a multi-key
/// get reads the rest in further rounds, so it takes any number of keys); a command
/// with the wrong number of words is `ERROR`; numbers are read as `DecimalText`
/// says; a trailing `noreply` silences every reply of that command, errors included;
/// a malformed command line never ends the connection and never swallows the data
/// block (the client's data line is then read as a command, as memcached does); only
/// a value refused as too large is swallowed. A line of more than 2,048 bytes with no
/// newline ends the connection unless it is a `get`/`gets` (which may run to
/// `maxGetLine`); so does a line whose last word starts with `HTTP/`.
enum TextProtocol {
    static let maxKeyLength = 250
    /// Words a line is split into at a time (memcached's MAX_TOKENS less its terminal).
    static let maxWords = 23

    /// Where the word at `from` ends: the next space before `to`, or `to` (memchr: a
    /// byte loop cost about 4 instructions a key byte).
    @inline(__always) static func wordEnd(_ b: UnsafeRawBufferPointer, from: Int, to end: Int) -> Int {
        guard from < end, let space = memchr(b.baseAddress! + from, 0x20, end - from) else { return max(from, end) }
        return UnsafeRawPointer(space) - b.baseAddress!
    }
    /// Bytes a line may reach with no newline before the session ends (memcached's).
    static let maxLine = 2048
    /// Bytes a `get`/`gets` line may reach (memcached grows its buffer without bound;
    /// this bounds a session's memory).
    static let maxGetLine = 32 << 20

    /// A command line split at spaces: word i is `line[starts[i]..<ends[i]]`. The
    /// boundaries live in the session's token buffers (no array to empty and grow per
    /// line): a `Tokens` is valid until the next one of the same session is made.
    struct Tokens {
        let starts: UnsafePointer<Int>
        let ends: UnsafePointer<Int>
        let count: Int
        /// Where the unsplit rest of the line starts, when it had more than `maxWords`
        /// words; nil when the whole line was split.
        let rest: Int?
        /// The end of the line (its first NUL, CR LF or LF).
        let lineEnd: Int
        /// memcached's token count: the words and its terminal token.
        var ntokens: Int { count + 1 }

        init(_ b: UnsafeRawBufferPointer, _ from: Int, _ to: Int, in s: Session) {
            let starts = s.tokenStarts, ends = s.tokenEnds
            var n = 0
            var rest: Int? = nil
            var start = from
            var i = from
            while i < to {
                i = TextProtocol.wordEnd(b, from: i, to: to)
                guard i < to else { break }
                if start < i {
                    starts[n] = start
                    ends[n] = i
                    n += 1
                    if n == TextProtocol.maxWords {
                        if i + 1 < to { rest = i + 1 }
                        start = to
                        break
                    }
                }
                start = i + 1
                i += 1
            }
            if start < to {
                starts[n] = start
                ends[n] = to
                n += 1
            }
            self.starts = UnsafePointer(starts)
            self.ends = UnsafePointer(ends)
            count = n
            self.rest = rest
            lineEnd = to
        }
    }

    /// Runs every complete command in the session's input that starts at or before
    /// input offset `through`.
    static func run(_ s: Session, _ ctx: KVSContext, through: Int = .max) {
        let logging = ctx.logs(1)
        s.input.withUnsafeBytes { b in
            while !s.closing && s.output.count < s.outputBudget {
                if s.swallow > 0 {
                    let n = min(s.swallow, s.unparsed)
                    s.consumed += n
                    s.swallow -= n
                    if s.swallow > 0 { break }
                }
                guard s.unparsed > 0, s.consumed <= through else { break }
                guard let nl = newline(b, from: max(s.consumed, s.scannedTo)) else {
                    s.scannedTo = b.count
                    if s.unparsed > maxLine && s.pendingRetrieval == nil && !mayGrow(b, from: s.consumed) {
                        ctx.countError()
                        closeAbruptly(s)
                    }
                    break
                }
                // As memcached: CR is dropped only from a line of 2 bytes or more, and the
                // line ends at its first NUL.
                var lineEnd = nl - s.consumed > 1 && b[nl - 1] == 0x0D ? nl - 1 : nl
                if let zero = firstNUL(b, s.consumed, lineEnd) { lineEnd = zero }
                if let retrieval = s.pendingRetrieval {  // the rest of a get's keys
                    s.pendingRetrieval = nil
                    let keys = Tokens(b, s.consumed, lineEnd, in: s)
                    s.consumed = nl + 1
                    retrieveKeys(s, ctx, b, keys, from: 0, retrieval, singleKey: false)
                    continue
                }
                let t = Tokens(b, s.consumed, lineEnd, in: s)
                let lineStart = s.consumed, replyStart = s.output.count
                if !execute(s, ctx, b, t, dataStart: nl + 1) { break }  // waits for a value's bytes
                if logging { log(s, ctx, UnsafeRawBufferPointer(rebasing: b[lineStart..<lineEnd]), replyStart: replyStart) }
            }
        }
        s.compact()
    }

    /// Whether a line with no newline yet, longer than `maxLine`, may keep growing:
    /// only a multi-key `get`/`gets` (after at most 100 spaces), up to `maxGetLine`.
    static func mayGrow(_ b: UnsafeRawBufferPointer, from: Int) -> Bool {
        guard b.count - from <= maxGetLine else { return false }
        var i = from
        while i < b.count && b[i] == 0x20 { i += 1 }
        guard i - from <= 100 else { return false }
        func startsWith(_ w: StaticString) -> Bool {
            w.withUTF8Buffer { w in
                guard b.count - i >= w.count else { return false }
                for k in 0..<w.count where b[i + k] != w[k] { return false }
                return true
            }
        }
        return startsWith("get ") || startsWith("gets ")
    }

    /// -vv: every command and its reply's first line; -v: only commands answered with
    /// an error.
    static func log(_ s: Session, _ ctx: KVSContext, _ line: UnsafeRawBufferPointer, replyStart: Int) {
        s.output.withUnsafeBytes { output in
            let reply = UnsafeRawBufferPointer(rebasing: output[min(replyStart, output.count)...])
            if ctx.logs(2) || reply.starts(with: "CLIENT_ERROR".utf8) || reply.starts(with: "SERVER_ERROR".utf8) {
                ctx.logCommand(s.logID, line, reply: reply)
            }
        }
    }

    /// Ends the session the way memcached drops a connection it cannot read: replies
    /// not yet sent are dropped with it (unless some are still due from other workers,
    /// whose places in the output must stay).
    static func closeAbruptly(_ s: Session) {
        if s.order.isEmpty { s.output.removeAll() }
        s.closing = true
    }

    @inline(__always) static func newline(_ b: UnsafeRawBufferPointer, from: Int) -> Int? {
        guard from < b.count, let p = memchr(b.baseAddress! + from, 0x0A, b.count - from) else { return nil }
        return UnsafeRawPointer(p) - b.baseAddress!
    }

    @inline(__always) static func firstNUL(_ b: UnsafeRawBufferPointer, _ from: Int, _ to: Int) -> Int? {
        guard from < to, let p = memchr(b.baseAddress! + from, 0, to - from) else { return nil }
        return UnsafeRawPointer(p) - b.baseAddress!
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

    static func length(_ t: Tokens, _ i: Int) -> Int { t.ends[i] - t.starts[i] }

    /// A word as memcached's `safe_strtoull` reads it.
    static func number(_ b: UnsafeRawBufferPointer, _ t: Tokens, _ i: Int) -> UInt64? {
        guard i < t.count else { return nil }
        return DecimalText.unsigned64(token(b, t, i))
    }

    /// A word as memcached's `safe_strtoul` reads it into 32 bits (flags, levels).
    static func number32(_ b: UnsafeRawBufferPointer, _ t: Tokens, _ i: Int) -> UInt32? {
        guard i < t.count else { return nil }
        return DecimalText.unsigned32(token(b, t, i))
    }

    /// A word as memcached's `safe_strtol` reads it (exptimes, lengths).
    static func signed(_ b: UnsafeRawBufferPointer, _ t: Tokens, _ i: Int) -> Int32? {
        guard i < t.count else { return nil }
        return DecimalText.signed32(token(b, t, i))
    }

    static func noreply(_ b: UnsafeRawBufferPointer, _ t: Tokens, at i: Int) -> Bool {
        i < t.count && equals(b, t, i, "noreply")
    }

    /// memcached's `set_noreply_maybe`: the line's last word is `noreply`.
    static func endsInNoreply(_ b: UnsafeRawBufferPointer, _ t: Tokens) -> Bool {
        t.count > 0 && t.rest == nil && equals(b, t, t.count - 1, "noreply")
    }

    /// Writes a reply line unless the command said noreply.
    @inline(__always) static func reply(_ s: Session, _ quiet: Bool, _ line: StaticString) {
        if !quiet { s.write(line) }
    }

    /// An error reply (counted), unless the command said noreply.
    static func error(_ s: Session, _ ctx: KVSContext, _ quiet: Bool, _ line: StaticString) {
        ctx.countError()
        reply(s, quiet, line)
    }

    /// Runs one command; false if it needs more input (nothing consumed).
    static func execute(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens, dataStart: Int) -> Bool {
        if let mode = storeMode(b, t) { return update(s, ctx, b, t, mode, dataStart: dataStart) }
        if t.count > 0 && length(t, 0) == 2 && b[t.starts[0]] == 0x6D {  // "m?": meta commands
            return MetaProtocol.execute(s, ctx, b, t, dataStart: dataStart)
        }
        s.consumed = dataStart
        s.commands += 1
        guard t.count > 0, length(t, 0) >= 2 else { error(s, ctx, false, "ERROR\r\n"); return true }
        let first = b[t.starts[0]]
        let nt = t.ntokens
        func want(_ ok: Bool) -> Bool {
            if !ok { error(s, ctx, false, "ERROR\r\n") }
            return ok
        }
        switch length(t, 0) {
        case 3 where equals(b, t, 0, "get"), 4 where equals(b, t, 0, "gets"), 3 where equals(b, t, 0, "gat"),
             4 where equals(b, t, 0, "gats"), 4 where equals(b, t, 0, "bget"):
            guard want(nt >= 3) else { return true }
            retrieve(s, ctx, b, t, touching: b[t.starts[0] + 1] == 0x61, withCas: b[t.ends[0] - 1] == 0x73 && first == 0x67)
        case 6 where equals(b, t, 0, "delete"):
            guard want(nt >= 3 && nt <= 5) else { return true }
            delete(s, ctx, b, t)
        case 4 where equals(b, t, 0, "incr"), 4 where equals(b, t, 0, "decr"):
            guard want(nt == 4 || nt == 5) else { return true }
            arithmetic(s, ctx, b, t, increment: first == 0x69)
        case 5 where equals(b, t, 0, "touch"):
            guard want(nt == 4 || nt == 5) else { return true }
            let quiet = endsInNoreply(b, t)
            guard length(t, 1) <= maxKeyLength else { error(s, ctx, quiet, "CLIENT_ERROR bad command line format\r\n"); return true }
            guard let e = signed(b, t, 2) else { error(s, ctx, quiet, "CLIENT_ERROR invalid exptime argument\r\n"); return true }
            let key = token(b, t, 1)
            let h = s.hash(key)
            let store = ctx.store
            let touched = store.withPartition(h) { $0.touch(key, hash: h, expiry: store.clock.expiry(Int64(e))) != nil }
            reply(s, quiet, touched ? "TOUCHED\r\n" : "NOT_FOUND\r\n")
        case 9 where equals(b, t, 0, "flush_all"):
            guard want(nt >= 2 && nt <= 4) else { return true }
            flushAll(s, ctx, b, t)
        case 7 where equals(b, t, 0, "version"):
            s.write("VERSION \(KVSContext.version)\r\n")
        case 4 where equals(b, t, 0, "quit"):
            s.closing = true
        case 9 where equals(b, t, 0, "verbosity"):
            guard want(nt == 3 || nt == 4) else { return true }
            let quiet = endsInNoreply(b, t)
            guard let v = number32(b, t, 1) else {
                error(s, ctx, quiet, "CLIENT_ERROR bad command line format\r\n")
                return true
            }
            ctx.verbosity.store(Int(min(v, 2)), ordering: .relaxed)
            reply(s, quiet, "OK\r\n")
        case 14 where equals(b, t, 0, "cache_memlimit"):
            guard want(nt == 3 || nt == 4) else { return true }
            let quiet = endsInNoreply(b, t)
            guard let megabytes = number32(b, t, 1) else {
                error(s, ctx, quiet, "ERROR\r\n")
                return true
            }
            if megabytes < 8 { reply(s, quiet, "MEMLIMIT_TOO_SMALL cannot set maxbytes to less than 8m\r\n") }
            else if megabytes > 1_000_000_000 { reply(s, quiet, "MEMLIMIT_ADJUST_FAILED input value is megabytes not bytes\r\n") }
            else if ctx.store.setMemoryLimit(Int(megabytes) << 20) { reply(s, quiet, "OK\r\n") }
            else { reply(s, quiet, "MEMLIMIT_ADJUST_FAILED out of bounds or unable to adjust\r\n") }
        case 5 where equals(b, t, 0, "stats"):
            stats(s, ctx, b, t)
        case 11 where equals(b, t, 0, "lru_crawler"):
            lruCrawler(s, ctx, b, t)
        case 8 where equals(b, t, 0, "shutdown"):
            guard let shutdown = ctx.shutdown else { s.write("ERROR: shutdown not enabled\r\n"); return true }
            if nt == 2 || (nt == 3 && equals(b, t, 1, "graceful")) {
                s.closing = true
                shutdown()
            } else {
                s.write("CLIENT_ERROR invalid shutdown mode\r\n")
            }
        default:
            // As memcached: something that looks like an HTTP request ends the connection.
            let last = t.count - 1
            if t.rest == nil, length(t, last) >= 5, memcmp(b.baseAddress! + t.starts[last], "HTTP/", 5) == 0 {
                closeAbruptly(s)
            } else {
                error(s, ctx, false, "ERROR\r\n")
            }
        }
        return true
    }

    /// The storage command a line names, if it names one.
    static func storeMode(_ b: UnsafeRawBufferPointer, _ t: Tokens) -> StoreMode? {
        guard t.count > 0 else { return nil }
        switch length(t, 0) {
        case 3 where equals(b, t, 0, "set"): return .set
        case 3 where equals(b, t, 0, "add"): return .add
        case 3 where equals(b, t, 0, "cas"): return .cas(0)
        case 7 where equals(b, t, 0, "replace"): return .replace
        case 7 where equals(b, t, 0, "prepend"): return .prepend
        case 6 where equals(b, t, 0, "append"): return .append
        default: return nil
        }
    }

    /// How a get serves its keys (kept while the rest of its line waits).
    struct Retrieval {
        let touching: Bool
        let withCas: Bool
        let expiry: UInt32
    }

    /// get, gets, gat, gats: every key of the line, in as many rounds of `maxWords` as
    /// it takes. A key over 250 bytes voids the reply: only the error is sent.
    static func retrieve(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens, touching: Bool, withCas: Bool) {
        var expiry: UInt32 = 0
        var first = 1
        if touching {
            guard let e = signed(b, t, 1) else { error(s, ctx, false, "CLIENT_ERROR invalid exptime argument\r\n"); return }
            expiry = ctx.store.clock.expiry(Int64(e))
            first = 2
        }
        retrieveKeys(s, ctx, b, t, from: first, Retrieval(touching: touching, withCas: withCas, expiry: expiry),
                     singleKey: t.count == first + 1 && t.rest == nil)
    }

    /// Serves the keys from word `next` of `words` on, then END. Past the session's
    /// output budget, with keys left, it stops after a value and leaves the rest of the
    /// line for later (`Session.pendingRetrieval`).
    static func retrieveKeys(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ words: Tokens, from next: Int,
                             _ r: Retrieval, singleKey: Bool) {
        let store = ctx.store
        let replyStart = s.output.count
        var words = words, next = next
        while true {
            while next < words.count {
                let key = token(b, words, next)
                next += 1
                guard key.count <= maxKeyLength else {
                    s.output.truncate(to: replyStart)
                    error(s, ctx, false, "CLIENT_ERROR bad command line format\r\n")
                    return
                }
                let h = s.hash(key)
                store.withPartition(h) { p in
                    let epoch = store.replyTable?.epoch.load(ordering: .acquiring) ?? 0
                    guard let it = r.touching ? p.touch(key, hash: h, expiry: r.expiry) : p.get(key, hash: h) else { return }
                    let start = s.output.count
                    defer {
                        // A hot single-key GET of a non-expiring item: install its reply for
                        // the pipeline (under the partition, so no write can interleave; not
                        // while a flush_all is pending or began since the item was read).
                        if let table = store.replyTable, !r.touching, !r.withCas, singleKey, it.expiry == 0, table.isHot(hash: h),
                           !store.flushPending {
                            let reply = s.output.withUnsafeBytes { Array($0[start...]) } + Array("END\r\n".utf8)
                            reply.withUnsafeBytes { _ = table.install(hash: h, key: key, reply: $0, epoch: epoch) }
                        }
                    }
                    LineComposer.compose(into: s) { line in
                        line.put("VALUE ")
                        line.put(key)
                        line.put(byte: 0x20)
                        line.put(number: it.flags)
                        line.put(byte: 0x20)
                        line.put(number: it.valueLength)
                        if r.withCas {
                            line.put(byte: 0x20)
                            line.put(number: it.cas)
                        }
                        line.put("\r\n")
                    }
                    s.write(UnsafeRawBufferPointer(it.value))
                    s.write("\r\n")
                }
                if s.output.count >= s.outputBudget, let resume = next < words.count ? words.starts[next] : words.rest {
                    s.consumed = resume
                    s.pendingRetrieval = r
                    return
                }
            }
            guard let rest = words.rest else { break }
            words = Tokens(b, rest, words.lineEnd, in: s)
            next = 0
        }
        s.write("END\r\n")
    }

    /// set, add, replace, append, prepend, cas. Returns false while the data block has
    /// not all arrived.
    static func update(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens, _ mode: StoreMode,
                       dataStart: Int) -> Bool {
        let store = ctx.store
        let isCas = mode == .cas(0)
        let nt = t.ntokens
        func lineOnly() { s.consumed = dataStart; s.commands += 1 }
        guard nt == (isCas ? 7 : 6) || nt == (isCas ? 8 : 7) else {
            lineOnly()
            error(s, ctx, false, "ERROR\r\n")
            return true
        }
        let quiet = endsInNoreply(b, t)
        guard length(t, 1) <= maxKeyLength, let flags = number32(b, t, 2),
              let exptime = signed(b, t, 3), let length = signed(b, t, 4) else {
            lineOnly()
            error(s, ctx, quiet, "CLIENT_ERROR bad command line format\r\n")
            return true
        }
        var mode = mode
        if isCas {
            guard let unique = number(b, t, 5) else {
                lineOnly()
                error(s, ctx, quiet, "CLIENT_ERROR bad command line format\r\n")
                return true
            }
            mode = .cas(unique)
        }
        guard length >= 0, length <= Int32.max - 2 else {
            lineOnly()
            error(s, ctx, quiet, "CLIENT_ERROR bad command line format\r\n")
            return true
        }
        let count = Int(length)
        let key = token(b, t, 1)
        guard store.fits(keyLength: key.count, flags: flags, valueLength: count) else {
            lineOnly()
            s.swallow = count + 2
            ctx.count(.storeTooLarge)
            reply(s, quiet, "SERVER_ERROR object too large for cache\r\n")
            if mode == .set {
                let h = s.hash(key)
                store.withPartition(h) { $0.discard(key, hash: h) }
            }
            return true
        }
        guard b.count - dataStart >= count + 2 else { return false }  // wait for the value
        s.consumed = dataStart + count + 2
        s.commands += 1
        guard b[dataStart + count] == 0x0D, b[dataStart + count + 1] == 0x0A else {
            error(s, ctx, quiet, "CLIENT_ERROR bad data chunk\r\n")
            return true
        }
        let h = s.hash(key)
        let value = UnsafeRawBufferPointer(rebasing: b[dataStart..<(dataStart + count)])
        let result = store.withPartition(h) { p in
            p.store(mode, key: key, hash: h, flags: flags, expiry: store.clock.expiry(Int64(exptime)), value: value)
        }
        switch result {
        case .stored: reply(s, quiet, "STORED\r\n")
        case .notStored: reply(s, quiet, "NOT_STORED\r\n")
        case .exists: reply(s, quiet, "EXISTS\r\n")
        case .notFound: reply(s, quiet, "NOT_FOUND\r\n")
        case .tooLarge: reply(s, quiet, "SERVER_ERROR object too large for cache\r\n")
        case .outOfMemory:
            ctx.count(.storeNoMemory)
            reply(s, quiet, "SERVER_ERROR out of memory storing object\r\n")
        }
        return true
    }

    /// `delete <key> [0] [noreply]`: memcached still accepts a zero hold time.
    static func delete(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens) {
        let nt = t.ntokens
        var quiet = false
        if nt > 3 {
            let holdIsZero = equals(b, t, 2, "0")
            quiet = endsInNoreply(b, t)
            guard (nt == 4 && (holdIsZero || quiet)) || (nt == 5 && holdIsZero && quiet) else {
                error(s, ctx, quiet, "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]\r\n")
                return
            }
        }
        guard length(t, 1) <= maxKeyLength else { error(s, ctx, quiet, "CLIENT_ERROR bad command line format\r\n"); return }
        let key = token(b, t, 1)
        let h = s.hash(key)
        let deleted = ctx.store.withPartition(h) { $0.delete(key, hash: h) }
        reply(s, quiet, deleted ? "DELETED\r\n" : "NOT_FOUND\r\n")
    }

    static func arithmetic(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens, increment: Bool) {
        let quiet = endsInNoreply(b, t)
        guard length(t, 1) <= maxKeyLength else { error(s, ctx, quiet, "CLIENT_ERROR bad command line format\r\n"); return }
        guard let amount = number(b, t, 2) else { error(s, ctx, quiet, "CLIENT_ERROR invalid numeric delta argument\r\n"); return }
        let key = token(b, t, 1)
        let h = s.hash(key)
        let r = ctx.store.withPartition(h) { $0.delta(key, hash: h, increment: increment, by: amount) }
        switch r {
        case .value(let v, _):
            if !quiet { s.write(number: v); s.write("\r\n") }
        case .notFound, .exists: reply(s, quiet, "NOT_FOUND\r\n")
        case .nonNumeric: error(s, ctx, quiet, "CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
        }
    }

    /// `flush_all [delay] [noreply]`; a delay past 30 days is an absolute unix time.
    static func flushAll(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens) {
        let quiet = endsInNoreply(b, t)
        ctx.count(.flushCommands)
        guard ctx.flushEnabled else { error(s, ctx, quiet, "CLIENT_ERROR flush_all not allowed\r\n"); return }
        var delay: Int32 = 0
        if t.ntokens != (quiet ? 3 : 2) {
            guard let d = signed(b, t, 1) else { error(s, ctx, quiet, "CLIENT_ERROR invalid exptime argument\r\n"); return }
            delay = d
        }
        ctx.store.flushAll(exptime: Int64(delay))
        reply(s, quiet, "OK\r\n")
    }

    static func stats(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens) {
        let lines: [(String, String)]
        if t.count == 1 {
            lines = ctx.generalStats()
        } else if equals(b, t, 1, "reset") {
            ctx.resetStats()
            s.write("RESET\r\n")
            return
        } else if equals(b, t, 1, "detail") {
            switch t.count > 2 ? String(decoding: token(b, t, 2), as: UTF8.self) : "" {
            case "on": ctx.detailEnabled.store(true, ordering: .relaxed); s.write("OK\r\n")
            case "off": ctx.detailEnabled.store(false, ordering: .relaxed); s.write("OK\r\n")
            case "dump": s.write("END\r\n")
            default: s.write("CLIENT_ERROR usage: stats detail on|off|dump\r\n")
            }
            return
        } else if equals(b, t, 1, "cachedump") {
            guard t.count >= 4 else { s.write("CLIENT_ERROR bad command line\r\n"); return }
            guard let id = number(b, t, 2), let limit = number(b, t, 3) else {
                s.write("CLIENT_ERROR bad command line format\r\n")
                return
            }
            guard id < 64 else { s.write("CLIENT_ERROR Illegal slab id\r\n"); return }
            ctx.cacheDump(into: s, sizeClass: Int(id), limit: Int(truncatingIfNeeded: limit))
            return
        } else if let report = ctx.statsReport(String(decoding: token(b, t, 1), as: UTF8.self)) {
            lines = report
        } else {
            s.write("ERROR\r\n")
            return
        }
        for (k, v) in lines { s.write("STAT \(k) \(v)\r\n") }
        s.write("END\r\n")
    }

    /// `lru_crawler metadump all|<class list>` lists every live item (memcached-tool
    /// `dump`, libmemcached's `memdump`); the other subcommands are accepted as no-ops
    /// (there is no crawler to tune: expired items are dropped when found or evicted).
    static func lruCrawler(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: Tokens) {
        let nt = t.ntokens
        if nt == 4 && equals(b, t, 1, "metadump") {
            ctx.metadump(into: s, classes: String(decoding: token(b, t, 2), as: UTF8.self))
        } else if nt == 4 && equals(b, t, 1, "crawl") {
            s.write("OK\r\n")
        } else if nt == 4 && (equals(b, t, 1, "tocrawl") || equals(b, t, 1, "sleep")) {
            guard let v = number32(b, t, 2) else {
                s.write("CLIENT_ERROR bad command line format\r\n")
                return
            }
            if equals(b, t, 1, "sleep") && v > 1_000_000 { s.write("CLIENT_ERROR sleep must be one second or less\r\n"); return }
            s.write("OK\r\n")
        } else if nt == 3 && (equals(b, t, 1, "enable") || equals(b, t, 1, "disable")) {
            s.write("OK\r\n")
        } else {
            s.write("ERROR\r\n")
        }
    }
}
