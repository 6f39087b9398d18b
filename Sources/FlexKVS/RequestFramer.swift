/// Finds where the next request of a TCP session ends and which key it names, without
/// running it, so that key steering can forward it to the worker owning the key.
///
/// Only requests whose whole extent and single key it can tell for certain are
/// `keyed`: text get/gets/gat/gats with one key, set/add/replace/append/prepend/cas
/// with their data block, delete, incr/decr, touch (with or without noreply), and the
/// binary opcodes that name one key. Everything else (multi-key gets, meta commands,
/// stats, malformed lines, values too large to forward, a value being swallowed) is
/// `local`: the protocol runs it where it is, under the partition lock, as in flow
/// steering.
enum RequestFramer {
    enum Frame: Equatable {
        /// Not all of the next request has arrived.
        case incomplete
        /// Run the protocol here on the request starting at `consumed` (and only it).
        case local
        /// `length` bytes from `consumed` are one request for the key at
        /// `keyStart ..< keyStart + keyLength` (offsets in the session's input).
        case keyed(length: Int, keyStart: Int, keyLength: Int)
    }

    /// Classifies the request at the session's `consumed` offset; requests longer than
    /// `maxLength` bytes are `local`. The session's dialect must be decided.
    static func next(_ s: Session, maxLength: Int) -> Frame {
        guard s.swallow == 0, s.pendingRetrieval == nil else { return .local }
        guard s.unparsed > 0 else { return .incomplete }
        return s.input.withUnsafeBytes { b in
            s.dialect == .binary ? binary(b, s.consumed, maxLength) : text(b, s.consumed, s, maxLength)
        }
    }

    static func text(_ b: UnsafeRawBufferPointer, _ start: Int, _ s: Session, _ maxLength: Int) -> Frame {
        guard let nl = TextProtocol.newline(b, from: start) else {
            return b.count - start > TextProtocol.maxLine ? .local : .incomplete
        }
        let lineEnd = nl > start && b[nl - 1] == 0x0D ? nl - 1 : nl
        // A NUL ends the line for the protocol: the key it names is not the token here.
        guard TextProtocol.firstNUL(b, start, lineEnd) == nil else { return .local }
        let t = TextProtocol.Tokens(b, start, lineEnd, in: s)
        guard t.count >= 2 else { return .local }
        func eq(_ w: StaticString) -> Bool { TextProtocol.equals(b, t, 0, w) }
        /// `n` tokens, or `n + 1` ending in noreply.
        func arity(_ n: Int) -> Bool { t.count == n || (t.count == n + 1 && TextProtocol.noreply(b, t, at: n)) }
        var keyIndex = 1
        var data = 0
        if eq("get") || eq("gets") {
            guard t.count == 2 else { return .local }
        } else if eq("gat") || eq("gats") {
            guard t.count == 3 else { return .local }
            keyIndex = 2
        } else if eq("set") || eq("add") || eq("replace") || eq("append") || eq("prepend") || eq("cas") {
            guard arity(eq("cas") ? 6 : 5), let n = TextProtocol.number(b, t, 4), n < UInt64(maxLength) else { return .local }
            data = Int(n) + 2
        } else if eq("delete") {
            guard arity(2) else { return .local }
        } else if eq("incr") || eq("decr") || eq("touch") {
            guard arity(3) else { return .local }
        } else {
            return .local
        }
        let keyLength = t.ends[keyIndex] - t.starts[keyIndex]
        let length = nl + 1 - start + data
        guard keyLength <= TextProtocol.maxKeyLength, length <= maxLength else { return .local }
        guard b.count - start >= length else { return .incomplete }
        // A data block not ended by CR LF is the protocol's error to report.
        if data > 0 && (b[start + length - 2] != 0x0D || b[start + length - 1] != 0x0A) { return .local }
        return .keyed(length: length, keyStart: t.starts[keyIndex], keyLength: keyLength)
    }

    /// Binary opcodes that act on exactly one key.
    static let keyedOpcodes: Set<UInt8> = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x09, 0x0C, 0x0D, 0x0E, 0x0F, 0x11, 0x12, 0x13, 0x14,
        0x15, 0x16, 0x19, 0x1A, 0x1C, 0x1D, 0x1E, 0x23, 0x24,
    ]

    static func binary(_ b: UnsafeRawBufferPointer, _ start: Int, _ maxLength: Int) -> Frame {
        let header = BinaryProtocol.headerSize
        guard b.count - start >= header else { return .incomplete }
        guard b[start] == BinaryProtocol.requestMagic, keyedOpcodes.contains(b[start + 1]) else { return .local }
        let keyLength = Int(BinaryProtocol.be16(b, start + 2))
        let extras = Int(b[start + 4])
        let body = Int(BinaryProtocol.be32(b, start + 8))
        guard (1...TextProtocol.maxKeyLength).contains(keyLength), keyLength + extras <= body, header + body <= maxLength else {
            return .local
        }
        guard b.count - start >= header + body else { return .incomplete }
        return .keyed(length: header + body, keyStart: start + header + extras, keyLength: keyLength)
    }
}
