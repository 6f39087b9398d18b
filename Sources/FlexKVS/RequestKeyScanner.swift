#if canImport(Glibc)
import Glibc
#endif

/// Finds the keys of the requests waiting in a TCP session's input without running
/// them, so that a worker can prefetch what their lookups will touch before the
/// protocol runs them one by one (their cache misses then overlap, as the pipeline's
/// hashes let a UDP burst's do).
///
/// Only a hint: it reads complete requests from the start of the input and stops at
/// the first it does not know how to skip (a meta command, a partial request, garbage);
/// whatever it finds or misses, the protocol parses the input itself.
public enum RequestKeyScanner {
    /// The most bytes looked at per call.
    static let window = 16 << 10

    /// Records up to `maximum` (at most `KeyHints.capacity`) keys of the requests in
    /// `input` (the session's `dialect`), with their hashes, in `hints`; returns how
    /// many. Fewer than two keys are not worth prefetching (one lookup has no misses to
    /// overlap): then it returns 0, and a lone key is never hashed (the protocol hashes
    /// it anyway).
    public static func scan(_ input: UnsafeRawBufferPointer, binary: Bool, into hints: KeyHints,
                     maximum: Int = KeyHints.capacity) -> Int {
        let b = UnsafeRawBufferPointer(rebasing: input.prefix(window))
        hints.removeAll()
        var keys = Keys(hints: hints, maximum: min(maximum, KeyHints.capacity))
        binary ? binaryKeys(b, &keys) : textKeys(b, &keys)
        if keys.found < 2 { hints.removeAll() }
        return hints.count
    }

    /// The keys found so far: the first one's bytes are hashed only once a second shows up.
    struct Keys {
        let hints: KeyHints
        let maximum: Int
        var found = 0
        var first = UnsafeRawBufferPointer(start: nil, count: 0)
        var isFull: Bool { found >= maximum }

        mutating func add(_ key: UnsafeRawBufferPointer) {
            if found == 0 {
                first = key
            } else {
                if found == 1 { hints.append(first, hash: KVStore.hash(first)) }
                hints.append(key, hash: KVStore.hash(key))
            }
            found += 1
        }
    }

    /// Binary requests: a 24-byte header (key length at 2, extras length at 4, body
    /// length at 8), then extras, key, value.
    static func binaryKeys(_ b: UnsafeRawBufferPointer, _ keys: inout Keys) {
        var o = 0
        while !keys.isFull && o + BinaryProtocol.headerSize <= b.count && b[o] == BinaryProtocol.requestMagic {
            let header = UnsafeRawBufferPointer(rebasing: b[o...])
            let keyLength = Int(BinaryProtocol.be16(header, 2)), extras = Int(header[4])
            let body = Int(BinaryProtocol.be32(header, 8))
            let key = o + BinaryProtocol.headerSize + extras
            guard key + keyLength <= b.count else { break }
            if keyLength > 0 { keys.add(UnsafeRawBufferPointer(rebasing: b[key..<(key + keyLength)])) }
            o += BinaryProtocol.headerSize + body
        }
    }

    /// Text requests: `get`/`gets` lines (every key), storage commands (their key; the
    /// data block is skipped), `delete`, `incr`, `decr`, `touch` (their key).
    static func textKeys(_ b: UnsafeRawBufferPointer, _ keys: inout Keys) {
        var o = 0
        while !keys.isFull, o < b.count, let newline = memchr(b.baseAddress! + o, 0x0A, b.count - o) {
            let end0 = UnsafeRawPointer(newline) - b.baseAddress!
            let end = end0 > o && b[end0 - 1] == 0x0D ? end0 - 1 : end0
            var t = TextProtocol.wordEnd(b, from: o, to: end)
            guard let kind = command(UnsafeRawBufferPointer(rebasing: b[o..<t])) else { return }
            var token = 1, dataLength = -1
            while t < end && !keys.isFull {
                while t < end && b[t] == 0x20 { t += 1 }
                let start = t
                t = TextProtocol.wordEnd(b, from: t, to: end)
                guard t > start else { break }
                token += 1
                if (kind == .retrieval || token == 2) && t - start <= TextProtocol.maxKeyLength {
                    keys.add(UnsafeRawBufferPointer(rebasing: b[start..<t]))
                }
                if token == 5 && kind == .storage {
                    // The length as the protocol reads it (memcached's safe_strtol).
                    dataLength = DecimalText.signed32(UnsafeRawBufferPointer(rebasing: b[start..<t])).map(Int.init) ?? -1
                }
                if kind != .retrieval && token >= 5 { break }
            }
            o = end0 + 1
            if kind == .storage {
                guard dataLength >= 0 else { return }
                o += dataLength + 2  // the data block and its CRLF
            }
        }
    }

    enum Command { case retrieval, storage, keyed }

    /// What a text command name is, as far as its keys go; nil for one the scan
    /// cannot skip.
    static func command(_ name: UnsafeRawBufferPointer) -> Command? {
        func `is`(_ word: StaticString) -> Bool {
            name.count == word.utf8CodeUnitCount && memcmp(name.baseAddress!, word.utf8Start, name.count) == 0
        }
        switch name.count {
        case 3: return `is`("get") ? .retrieval : `is`("set") || `is`("add") || `is`("cas") ? .storage : nil
        case 4: return `is`("gets") ? .retrieval : `is`("incr") || `is`("decr") ? .keyed : nil
        case 5: return `is`("touch") ? .keyed : nil
        case 6: return `is`("append") ? .storage : `is`("delete") ? .keyed : nil
        case 7: return `is`("replace") || `is`("prepend") ? .storage : nil
        default: return nil
        }
    }
}
