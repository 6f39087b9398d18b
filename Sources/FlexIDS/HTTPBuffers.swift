/// The HTTP buffers of one packet's payload (or reassembled PDU), as byte ranges of it:
/// found by a single pass over a request line (`METHOD SP target SP HTTP/x.y`) or status
/// line (`HTTP/x.y SP code SP message`), the header block and the body after the blank
/// line. A request's body is its Content-Length's bytes, or the rest when chunked or
/// when what follows is no request line; a response's body is the rest. What follows a
/// request whose length is known is the next pipelined request (`end`). The normalized URI is `URINormalizer`'s, the decoded body `HTTPBodyDecoder`'s;
/// a payload that starts neither way has none of the buffers.
struct HTTPBuffers {
    var method: Range<Int>?
    var uri: Range<Int>?
    var header: Range<Int>?
    var cookie: Range<Int>?
    var body: Range<Int>?
    var statusCode: Range<Int>?
    var statusMessage: Range<Int>?
    /// Where a request whose headers are complete ends (its body included): where a
    /// pipelined request would start. nil for responses and cut-short requests.
    var end: Int?

    init() {}

    init(parsing p: UnsafeRawBufferPointer) {
        let n = p.count
        guard n >= 8 else { return }
        func find(_ byte: UInt8, from: Int, to end: Int) -> Int? {
            var i = from
            while i < end { if p[i] == byte { return i }; i += 1 }
            return nil
        }
        let lineEnd = find(0x0A, from: 0, to: n) ?? n
        let line = lineEnd > 0 && p[lineEnd - 1] == 0x0D ? lineEnd - 1 : lineEnd
        guard let sp1 = find(0x20, from: 0, to: line), sp1 > 0 else { return }
        if p[0] == UInt8(ascii: "H"), sp1 >= 8, Self.startsWith(p, "HTTP/", at: 0) {
            let codeEnd = find(0x20, from: sp1 + 1, to: line) ?? line
            guard codeEnd - sp1 - 1 == 3 else { return }
            statusCode = (sp1 + 1)..<codeEnd
            statusMessage = min(codeEnd + 1, line)..<line
        } else {
            for i in 0..<sp1 where !(p[i] >= UInt8(ascii: "A") && p[i] <= UInt8(ascii: "Z")) { return }
            guard let sp2 = find(0x20, from: sp1 + 1, to: line), sp2 > sp1 + 1,
                  Self.startsWith(p, "HTTP/", at: sp2 + 1) else { return }
            method = 0..<sp1
            uri = (sp1 + 1)..<sp2
        }
        // Headers: lines up to the first empty one; the body follows it.
        var start = min(lineEnd + 1, n)
        let headerStart = start
        var headerEnd = n
        var contentLength: Int? = nil, chunked = false
        while start < n {
            let end = find(0x0A, from: start, to: n) ?? n
            let content = end > start && p[end - 1] == 0x0D ? end - 1 : end
            if content == start {
                headerEnd = start
                let bodyStart = min(end + 1, n)
                let rest = UnsafeRawBufferPointer(rebasing: p[bodyStart...])
                if let contentLength, method != nil, !chunked {
                    let bodyEnd = bodyStart + min(contentLength, n - bodyStart)
                    body = bodyStart..<bodyEnd
                    if bodyStart + contentLength <= n { self.end = bodyEnd }
                } else if method != nil && !chunked && (rest.isEmpty || Self.startsRequest(rest)) {
                    // No length and another request follows: this one has no body.
                    body = bodyStart..<bodyStart
                    self.end = bodyStart
                } else {
                    body = bodyStart..<n
                }
                break
            }
            if content - start > 7, Self.startsWith(p, "cookie:", at: start, caseless: true) {
                var v = start + 7
                while v < content && p[v] == 0x20 { v += 1 }
                cookie = v..<content
            } else if content - start > 15, Self.startsWith(p, "content-length:", at: start, caseless: true) {
                var v = start + 15, n = 0
                while v < content && p[v] == 0x20 { v += 1 }
                while v < content, p[v] >= 0x30, p[v] <= 0x39, n < 1 << 30 { n = n * 10 + Int(p[v] - 0x30); v += 1 }
                contentLength = n
            } else if content - start > 18, Self.startsWith(p, "transfer-encoding:", at: start, caseless: true) {
                chunked = HTTPBodyDecoder.contains(UnsafeRawBufferPointer(rebasing: p[start..<content]), "chunked")
            }
            start = end + 1
        }
        header = headerStart..<max(headerStart, headerEnd)
    }

    /// Whether `p` starts with what a request line starts with: a method of capital
    /// letters and a space.
    static func startsRequest(_ p: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < p.count && i < 16 && p[i] >= UInt8(ascii: "A") && p[i] <= UInt8(ascii: "Z") { i += 1 }
        return i > 0 && i < p.count && p[i] == 0x20
    }

    static func startsWith(_ p: UnsafeRawBufferPointer, _ text: StaticString, at offset: Int, caseless: Bool = false) -> Bool {
        let count = text.utf8CodeUnitCount
        guard offset + count <= p.count else { return false }
        let t = text.utf8Start
        for i in 0..<count {
            let b = caseless ? MultiPatternMatcher.fold[Int(p[offset + i])] : p[offset + i]
            if b != t[i] { return false }
        }
        return true
    }

    /// The range a content or pcre on `buffer` looks at; nil when the packet lacks it.
    func range(_ buffer: InspectionBuffer, payloadCount: Int) -> Range<Int>? {
        switch buffer {
        case .raw: return 0..<payloadCount
        case .httpMethod: return method
        case .httpURI, .httpRawURI: return uri
        case .httpHeader: return header
        case .httpCookie: return cookie
        case .httpClientBody: return method == nil ? nil : body
        case .httpStatCode: return statusCode
        case .httpStatMessage: return statusMessage
        case .fileData: return body ?? (method == nil && statusCode == nil ? 0..<payloadCount : nil)
        case .base64Decoded: return nil  // not a range of the payload (`PacketContext.bytes`)
        }
    }
}
