/// memcached's meta commands (protocol.txt, "Meta Commands"): mg, ms, md, ma, mn, me,
/// with their common flags. Return flags come back in the order they were asked for.
///
/// Implemented flags — mg: c f k O q s t v T; ms: c C F k O q T M(E A P R S) I (ignored);
/// md: C k O q; ma: c C D J k M(I + D -) N O q t T v. Base64 keys (b) are refused with
/// `CLIENT_ERROR`.
enum MetaProtocol {
    /// One flag token: its letter and the text after it.
    struct Flag {
        let letter: UInt8
        let argument: UnsafeRawBufferPointer

        var number: UInt64? { Partition.parseDecimal(argument) }
        var signed: Int64? {
            if argument.first == 0x2D {
                return Partition.parseDecimal(UnsafeRawBufferPointer(rebasing: argument.dropFirst())).map { -Int64($0) }
            }
            return number.map { Int64($0) }
        }
    }

    static func flags(_ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens, from: Int) -> [Flag] {
        (from..<t.count).map { i in
            Flag(letter: b[t.starts[i]], argument: UnsafeRawBufferPointer(rebasing: b[(t.starts[i] + 1)..<t.ends[i]]))
        }
    }

    /// Writes the return flags that echo the request (O, k) or report the item.
    static func writeReturnFlags(_ s: Session, _ flags: [Flag], key: UnsafeRawBufferPointer, item: ItemView?, now: UInt32) {
        for f in flags {
            switch f.letter {
            case 0x4F: s.write(" O"); s.write(f.argument)  // O opaque
            case 0x6B: s.write(" k"); s.write(key)           // k key
            case 0x63: if let it = item { s.write(" c"); s.write(number: it.cas) }
            case 0x66: if let it = item { s.write(" f"); s.write(number: it.flags) }
            case 0x73: if let it = item { s.write(" s"); s.write(number: it.valueLength) }
            case 0x74:
                if let it = item {
                    s.write(" t")
                    if it.expiry == 0 { s.write("-1") } else { s.write(number: it.expiry > now ? it.expiry - now : 0) }
                }
            default: break
            }
        }
    }

    static func has(_ flags: [Flag], _ letter: Character) -> Bool {
        let l = letter.asciiValue!
        return flags.contains { $0.letter == l }
    }

    static func value(_ flags: [Flag], _ letter: Character) -> Flag? {
        let l = letter.asciiValue!
        return flags.first { $0.letter == l }
    }

    /// Runs a meta command (first token "m?"). Returns false if it needs more input.
    static func execute(_ s: Session, _ ctx: KVSContext, _ b: UnsafeRawBufferPointer, _ t: TextProtocol.Tokens,
                        dataStart: Int) -> Bool {
        let store = ctx.store
        let command = b[t.starts[0] + 1]
        func lineOnly() { s.consumed = dataStart; s.commands += 1 }
        if command == 0x6E { lineOnly(); s.write("MN\r\n"); return true }  // mn
        // As memcached: a meta command without a key is not a command; one with an
        // over-long key, or an ms without a valid length, is a format error; neither
        // ends the connection.
        guard t.count >= 2 else {
            lineOnly()
            TextProtocol.error(s, ctx, false, command == 0x65 ? "CLIENT_ERROR bad command line format\r\n" : "ERROR\r\n")
            return true
        }
        guard t.ends[1] - t.starts[1] <= TextProtocol.maxKeyLength,
              command != 0x73 || (t.count >= 3 && TextProtocol.signed(b, t, 2).map({ $0 >= 0 && $0 <= Int32.max - 2 }) == true) else {
            lineOnly()
            TextProtocol.error(s, ctx, false, "CLIENT_ERROR bad command line format\r\n")
            return true
        }
        let key = TextProtocol.token(b, t, 1)
        let now = store.clock.seconds
        switch command {
        case 0x67:  // mg
            s.consumed = dataStart; s.commands += 1
            let f = flags(b, t, from: 2)
            guard !has(f, "b") else { s.write("CLIENT_ERROR base64 keys not supported\r\n"); return true }
            let h = s.hash(key)
            store.withPartition(h) { p in
                let item = value(f, "T").flatMap(\.signed).map { p.touch(key, hash: h, expiry: store.clock.expiry($0)) }
                    ?? p.get(key, hash: h)
                guard let it = item else {
                    if !has(f, "q") { s.write("EN\r\n") }
                    return
                }
                if has(f, "v") {
                    s.write("VA "); s.write(number: it.valueLength)
                } else {
                    s.write("HD")
                }
                writeReturnFlags(s, f, key: key, item: it, now: now)
                s.write("\r\n")
                if has(f, "v") { s.write(UnsafeRawBufferPointer(it.value)); s.write("\r\n") }
            }
            return true

        case 0x73:  // ms <key> <datalen> <flags>*
            let count = Int(TextProtocol.signed(b, t, 2)!)
            let flagsValue = UInt32(truncatingIfNeeded: value(flags(b, t, from: 3), "F")?.number ?? 0)
            if !store.fits(keyLength: key.count, flags: flagsValue, valueLength: count) {
                s.consumed = dataStart; s.commands += 1
                s.swallow = count + 2
                s.write("SERVER_ERROR object too large for cache\r\n")
                return true
            }
            guard b.count - dataStart >= count + 2 else { return false }
            s.consumed = dataStart + count + 2; s.commands += 1
            guard b[dataStart + count] == 0x0D, b[dataStart + count + 1] == 0x0A else {
                s.write("CLIENT_ERROR bad data chunk\r\n")
                ctx.countError()
                return true
            }
            let f = flags(b, t, from: 3)
            var mode: StoreMode = .set
            switch value(f, "M")?.argument.first {
            case 0x45?, 0x65?: mode = .add        // E
            case 0x41?, 0x61?: mode = .append     // A
            case 0x50?, 0x70?: mode = .prepend    // P
            case 0x52?, 0x72?: mode = .replace    // R
            case nil, 0x53?, 0x73?: mode = .set   // S
            default:
                s.write("CLIENT_ERROR invalid mode for ms STORE\r\n")
                return true
            }
            if let c = value(f, "C")?.number { mode = .cas(c) }
            let expiry = store.clock.expiry(value(f, "T")?.signed ?? 0)
            let h = s.hash(key)
            let data = UnsafeRawBufferPointer(rebasing: b[dataStart..<(dataStart + count)])
            store.withPartition(h) { p in
                let r = p.store(mode, key: key, hash: h, flags: flagsValue, expiry: expiry, value: data)
                switch r {
                case .stored:
                    if has(f, "q") { return }
                    s.write("HD")
                    writeReturnFlags(s, f, key: key, item: p.get(key, hash: h), now: now)
                    s.write("\r\n")
                case .notStored: s.write("NS"); writeReturnFlags(s, f, key: key, item: nil, now: now); s.write("\r\n")
                case .exists: s.write("EX"); writeReturnFlags(s, f, key: key, item: nil, now: now); s.write("\r\n")
                case .notFound: s.write("NF"); writeReturnFlags(s, f, key: key, item: nil, now: now); s.write("\r\n")
                case .tooLarge: s.write("SERVER_ERROR object too large for cache\r\n")
                case .outOfMemory: s.write("SERVER_ERROR out of memory storing object\r\n")
                }
            }
            return true

        case 0x64:  // md
            s.consumed = dataStart; s.commands += 1
            let f = flags(b, t, from: 2)
            let h = s.hash(key)
            store.withPartition(h) { p in
                if let c = value(f, "C")?.number, let it = p.get(key, hash: h), it.cas != c {
                    s.write("EX"); writeReturnFlags(s, f, key: key, item: nil, now: now); s.write("\r\n")
                    return
                }
                let deleted = p.delete(key, hash: h)
                if deleted && has(f, "q") { return }
                s.write(deleted ? "HD" : "NF")
                writeReturnFlags(s, f, key: key, item: nil, now: now)
                s.write("\r\n")
            }
            return true

        case 0x61:  // ma
            s.consumed = dataStart; s.commands += 1
            let f = flags(b, t, from: 2)
            let decrement: Bool
            switch value(f, "M")?.argument.first {
            case nil, 0x49?, 0x69?, 0x2B?: decrement = false  // I, +
            case 0x44?, 0x64?, 0x2D?: decrement = true        // D, -
            default:
                s.write("CLIENT_ERROR invalid mode for ma\r\n")
                return true
            }
            let delta = value(f, "D")?.number ?? 1
            let create = value(f, "N")?.signed.map { (value(f, "J")?.number ?? 0, store.clock.expiry($0)) }
            let h = s.hash(key)
            store.withPartition(h) { p in
                switch p.delta(key, hash: h, increment: !decrement, by: delta, initial: create, cas: value(f, "C")?.number ?? 0) {
                case .value(let v, _):
                    if let ttl = value(f, "T")?.signed { _ = p.touch(key, hash: h, expiry: store.clock.expiry(ttl)) }
                    if has(f, "q") { return }
                    let item = p.get(key, hash: h)
                    if has(f, "v") { s.write("VA "); s.write(number: String(v).utf8.count) } else { s.write("HD") }
                    writeReturnFlags(s, f, key: key, item: item, now: now)
                    s.write("\r\n")
                    if has(f, "v") { s.write(number: v); s.write("\r\n") }
                case .notFound: s.write("NF"); writeReturnFlags(s, f, key: key, item: nil, now: now); s.write("\r\n")
                case .exists: s.write("EX"); writeReturnFlags(s, f, key: key, item: nil, now: now); s.write("\r\n")
                case .nonNumeric: s.write("CLIENT_ERROR cannot increment or decrement non-numeric value\r\n")
                }
            }
            return true

        case 0x65:  // me
            s.consumed = dataStart; s.commands += 1
            let h = s.hash(key)
            store.withPartition(h) { p in
                guard let it = p.get(key, hash: h) else { s.write("EN\r\n"); return }
                s.write("ME "); s.write(key)
                s.write(" exp="); if it.expiry == 0 { s.write("-1") } else { s.write(number: it.expiry > now ? it.expiry - now : 0) }
                s.write(" cas="); s.write(number: it.cas)
                s.write(" size="); s.write(number: it.recordSize)
                s.write(" partition="); s.write(number: p.index)
                s.write("\r\n")
            }
            return true

        default:
            s.consumed = dataStart; s.commands += 1
            s.write("ERROR\r\n")
            ctx.countError()
            return true
        }
    }
}
