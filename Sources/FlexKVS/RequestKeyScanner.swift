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

    /// Writes the hashes of up to `maximum` keys of the requests in `input` (the
    /// session's `dialect`) to `hashes`; returns how many.
    public static func hashes(in input: UnsafeRawBufferPointer, binary: Bool, into hashes: UnsafeMutablePointer<UInt32>,
                              maximum: Int) -> Int {
        let b = UnsafeRawBufferPointer(rebasing: input.prefix(window))
        return binary ? binaryKeys(b, hashes, maximum) : textKeys(b, hashes, maximum)
    }

    /// Binary requests: a 24-byte header (key length at 2, extras length at 4, body
    /// length at 8), then extras, key, value.
    static func binaryKeys(_ b: UnsafeRawBufferPointer, _ hashes: UnsafeMutablePointer<UInt32>, _ maximum: Int) -> Int {
        var n = 0, o = 0
        while n < maximum && o + BinaryProtocol.headerSize <= b.count && b[o] == BinaryProtocol.requestMagic {
            let header = UnsafeRawBufferPointer(rebasing: b[o...])
            let keyLength = Int(BinaryProtocol.be16(header, 2)), extras = Int(header[4])
            let body = Int(BinaryProtocol.be32(header, 8))
            let key = o + BinaryProtocol.headerSize + extras
            guard key + keyLength <= b.count else { break }
            if keyLength > 0 {
                hashes[n] = KVStore.hash(UnsafeRawBufferPointer(rebasing: b[key..<(key + keyLength)]))
                n += 1
            }
            o += BinaryProtocol.headerSize + body
        }
        return n
    }

    /// Text requests: `get`/`gets` lines (every key), storage commands (their key; the
    /// data block is skipped), `delete`, `incr`, `decr`, `touch` (their key).
    static func textKeys(_ b: UnsafeRawBufferPointer, _ hashes: UnsafeMutablePointer<UInt32>, _ maximum: Int) -> Int {
        var n = 0, o = 0
        while n < maximum, o < b.count, let newline = b[o...].firstIndex(of: 0x0A) {
            let end = newline > o && b[newline - 1] == 0x0D ? newline - 1 : newline
            var t = o
            while t < end && b[t] != 0x20 { t += 1 }
            let command = b[o..<t]
            let retrieval = command.elementsEqual(get) || command.elementsEqual(gets)
            let storage = storageCommands.contains { command.elementsEqual($0) }
            guard retrieval || storage || keyedCommands.contains(where: { command.elementsEqual($0) }) else { return n }
            var token = 1, dataLength = -1
            while t < end && n < maximum {
                while t < end && b[t] == 0x20 { t += 1 }
                let start = t
                while t < end && b[t] != 0x20 { t += 1 }
                guard t > start else { break }
                token += 1
                if (retrieval || token == 2) && t - start <= TextProtocol.maxKeyLength {
                    hashes[n] = KVStore.hash(UnsafeRawBufferPointer(rebasing: b[start..<t]))
                    n += 1
                }
                if token == 5 && storage {
                    // The length as the protocol reads it (memcached's safe_strtol).
                    dataLength = DecimalText.signed32(UnsafeRawBufferPointer(rebasing: b[start..<t])).map(Int.init) ?? -1
                }
                if !retrieval && token >= 5 { break }
            }
            o = newline + 1
            if storage {
                guard dataLength >= 0 else { return n }
                o += dataLength + 2  // the data block and its CRLF
            }
        }
        return n
    }

    static let get = Array("get".utf8), gets = Array("gets".utf8)
    static let storageCommands = ["set", "add", "replace", "append", "prepend", "cas"].map { Array($0.utf8) }
    static let keyedCommands = ["delete", "incr", "decr", "touch"].map { Array($0.utf8) }
}
