import CZlib

/// What http_inspect does to an HTTP body before `file_data` and `http_client_body` see
/// it (Snort's default configuration: `inspect_gzip`, dechunking): the chunked transfer
/// coding removed, then a gzip or deflate content coding inflated, into at most
/// `outputLimit` bytes (Snort's decompress_depth default, 65,535). A body cut short (the
/// rest is in later packets) is decoded as far as it goes; a body that fails to inflate
/// is inspected as it came, and counted.
///
/// One per instance: its buffers and zlib stream are made once and reused, so decoding
/// allocates nothing per packet. Not shared between threads.
final class HTTPBodyDecoder {
    static let outputLimit = 65535
    let dechunked = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 64)
    let inflated = UnsafeMutableRawBufferPointer.allocate(byteCount: outputLimit, alignment: 64)
    private var stream = z_stream()
    private var streamReady = false
    /// Bodies decoded (dechunked, inflated or both), and ones that failed to inflate.
    var decoded = 0
    var failures = 0

    deinit {
        if streamReady { inflateEnd(&stream) }
        dechunked.deallocate()
        inflated.deallocate()
    }

    /// The codings a header block declares.
    struct Codings {
        var chunked = false
        var gzip = false
        var deflate = false
        var any: Bool { chunked || gzip || deflate }
    }

    static func codings(_ header: UnsafeRawBufferPointer) -> Codings {
        var c = Codings()
        var start = 0
        while start < header.count {
            var end = start
            while end < header.count && header[end] != 0x0A { end += 1 }
            let line = UnsafeRawBufferPointer(rebasing: header[start..<end])
            if HTTPBuffers.startsWith(line, "transfer-encoding:", at: 0, caseless: true), Self.contains(line, "chunked") { c.chunked = true }
            if HTTPBuffers.startsWith(line, "content-encoding:", at: 0, caseless: true) {
                if Self.contains(line, "gzip") { c.gzip = true } else if Self.contains(line, "deflate") { c.deflate = true }
            }
            start = end + 1
        }
        return c
    }

    static func contains(_ p: UnsafeRawBufferPointer, _ word: StaticString) -> Bool {
        let n = word.utf8CodeUnitCount
        guard p.count >= n else { return false }
        for i in 0...(p.count - n) where HTTPBuffers.startsWith(p, word, at: i, caseless: true) { return true }
        return false
    }

    /// The decoded body, or nil when the headers declare no coding (the body is
    /// inspected as it is).
    func decode(header: UnsafeRawBufferPointer, body: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer? {
        let codings = Self.codings(header)
        guard codings.any else { return nil }
        var data = body
        if codings.chunked {
            data = UnsafeRawBufferPointer(rebasing: dechunked[0..<Self.dechunk(body, into: dechunked)])
        }
        guard codings.gzip || codings.deflate else {
            decoded &+= 1
            return data
        }
        // gzip: a gzip wrapper (31 bits of window + 16); deflate: a zlib wrapper, or
        // (as some servers send it) raw deflate.
        if let n = inflate(data, windowBits: codings.gzip ? 15 + 16 : 15) ?? (codings.deflate ? inflate(data, windowBits: -15) : nil) {
            decoded &+= 1
            return UnsafeRawBufferPointer(rebasing: inflated[0..<n])
        }
        failures &+= 1
        return data
    }

    /// Removes the chunked coding: `size-in-hex[;ext] CRLF data CRLF`... until a zero
    /// size or the end of what arrived; returns the bytes written.
    static func dechunk(_ body: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Int {
        var i = 0, written = 0
        while i < body.count {
            var size = 0, digits = 0
            while i < body.count, let d = RuleParser.hexValue(body[i]) {
                guard size < 1 << 24 else { return written }  // no chunk is this long
                size = size << 4 | Int(d)
                digits += 1
                i += 1
            }
            guard digits > 0, size > 0 else { return written }
            while i < body.count && body[i] != 0x0A { i += 1 }  // extensions, CR
            i += 1
            let n = max(0, min(size, body.count - i, out.count - written))
            if n > 0 { (out.baseAddress! + written).copyMemory(from: body.baseAddress! + i, byteCount: n) }
            written += n
            i += size
            while i < body.count && (body[i] == 0x0D || body[i] == 0x0A) { i += 1 }
        }
        return written
    }

    /// Inflates `data` with zlib into `inflated` as far as it goes; nil if it is not
    /// such a stream at all.
    func inflate(_ data: UnsafeRawBufferPointer, windowBits: Int32) -> Int? {
        guard !data.isEmpty else { return nil }
        if !streamReady {
            guard inflateInit2_(&stream, windowBits, zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else { return nil }
            streamReady = true
        } else {
            guard inflateReset2(&stream, windowBits) == Z_OK else { return nil }
        }
        stream.next_in = UnsafeMutablePointer(mutating: data.baseAddress!.assumingMemoryBound(to: Bytef.self))
        stream.avail_in = uInt(data.count)
        stream.next_out = inflated.baseAddress!.assumingMemoryBound(to: Bytef.self)
        stream.avail_out = uInt(inflated.count)
        let rc = CZlib.inflate(&stream, Z_SYNC_FLUSH)
        let produced = inflated.count - Int(stream.avail_out)
        // A stream cut short still gives what it produced; one that is no stream at all
        // (a data error before any output) is nil.
        guard rc == Z_OK || rc == Z_STREAM_END || rc == Z_BUF_ERROR || produced > 0 else { return nil }
        return produced
    }
}
