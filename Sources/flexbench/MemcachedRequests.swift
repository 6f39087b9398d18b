import ArgumentParser
/// Builds memcached requests and counts complete responses in a byte stream, for the
/// four wire formats the load generator speaks.
enum WireFormat: String, CaseIterable, ExpressibleByArgument {
    case tcpASCII = "tcp-ascii", tcpBinary = "tcp-binary", udpASCII = "udp-ascii", udpBinary = "udp-binary"

    var isUDP: Bool { self == .udpASCII || self == .udpBinary }
    var isBinary: Bool { self == .tcpBinary || self == .udpBinary }

    /// Appends a GET or SET for `key` to `out`.
    func appendRequest(_ out: inout [UInt8], get: Bool, key: ArraySlice<UInt8>, value: [UInt8], opaque: UInt32) {
        if isBinary {
            let extras = get ? 0 : 8
            let body = extras + key.count + (get ? 0 : value.count)
            out += [0x80, get ? 0x00 : 0x01, UInt8(key.count >> 8), UInt8(key.count & 255), UInt8(extras), 0, 0, 0]
            out += [UInt8(body >> 24), UInt8(body >> 16 & 255), UInt8(body >> 8 & 255), UInt8(body & 255)]
            out += [UInt8(opaque >> 24), UInt8(opaque >> 16 & 255), UInt8(opaque >> 8 & 255), UInt8(opaque & 255)]
            out += [0, 0, 0, 0, 0, 0, 0, 0]
            if !get { out += [0, 0, 0, 0, 0, 0, 0, 0] }
            out += key
            if !get { out += value }
        } else if get {
            out += Array("get ".utf8)
            out += key
            out += [0x0D, 0x0A]
        } else {
            out += Array("set ".utf8)
            out += key
            out += Array(" 0 0 \(value.count)\r\n".utf8)
            out += value
            out += [0x0D, 0x0A]
        }
    }

    /// Length of the first complete response in `b[from...]`, or nil if incomplete.
    /// `hit` tells whether a GET found its key.
    func responseLength(_ b: UnsafeRawBufferPointer, from: Int, hit: inout Bool) -> Int? {
        if isBinary {
            guard b.count - from >= 24 else { return nil }
            let body = Int(b[from + 8]) << 24 | Int(b[from + 9]) << 16 | Int(b[from + 10]) << 8 | Int(b[from + 11])
            guard b.count - from >= 24 + body else { return nil }
            hit = b[from + 6] == 0 && b[from + 7] == 0
            return 24 + body
        }
        guard let nl = Self.lineEnd(b, from) else { return nil }
        // "VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n"
        if nl - from > 6 && b[from] == 0x56 && b[from + 1] == 0x41 {
            var i = nl - 2  // before "\r"
            var n = 0, scale = 1
            while i > from && b[i] != 0x20 { n += Int(b[i] - 0x30) * scale; scale *= 10; i -= 1 }
            let dataEnd = nl + 1 + n + 2
            guard b.count >= dataEnd, let end = Self.lineEnd(b, dataEnd) else { return nil }
            hit = true
            return end + 1 - from
        }
        hit = false
        return nl + 1 - from
    }

    static func lineEnd(_ b: UnsafeRawBufferPointer, _ from: Int) -> Int? {
        var i = from
        while i < b.count {
            if b[i] == 0x0A { return i }
            i += 1
        }
        return nil
    }
}
