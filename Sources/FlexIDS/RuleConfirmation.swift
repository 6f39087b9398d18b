import FlexWire

/// One packet as rule confirmation sees it, and the check of one candidate rule against
/// it: header, flow, size and flag tests, then the detection options in rule order.
///
/// Contents and pcres keep a cursor (buffer and position; Snort's "doe pointer"):
/// relative options (`distance`, `within`, pcre `R`, `isdataat ... relative`) start at
/// it. A content that matches moves it to the end of the match; when a later option
/// fails, the content is retried at its next occurrence (Snort's backtracking), at
/// most `backtrackLimit` times per rule.
struct PacketContext {
    let frame: ParsedFrame
    let endpoints: PacketAddresses
    /// The packet is a PDU rebuilt by stream reassembly (`flow:only_stream` rules see
    /// only these, `no_stream` rules never).
    let isStream: Bool
    /// The frame's first byte (header fields are read at `frame`'s offsets).
    let bytes: UnsafeRawPointer
    let payload: UnsafeRawBufferPointer
    let flow: FlowVerdict
    let scratch: PatternScratch
    /// The rule's byte_extract variables (`RuleParser.maximumVariables` slots).
    let variables: UnsafeMutablePointer<Int>
    /// Room for the normalized URI (at least as long as any payload).
    let uriScratch: UnsafeMutableRawBufferPointer
    /// Room for what `base64_decode` decodes (64 KiB: Snort's decode buffer).
    let base64Scratch: UnsafeMutableRawBufferPointer
    /// How many bytes of `base64Scratch` the rule's last `base64_decode` decoded.
    private var base64Count = 0
    let bodyDecoder: HTTPBodyDecoder
    private var http: HTTPBuffers?
    private var normalizedURI: UnsafeRawBufferPointer?
    /// The body decoded (dechunked, inflated) once it was asked for; nil inside: the
    /// body has no coding.
    private var decoded: UnsafeRawBufferPointer??
    private var steps = 0

    static let backtrackLimit = 256

    init(frame: ParsedFrame, endpoints: PacketAddresses, isStream: Bool = false, bytes: UnsafeRawPointer, payload: UnsafeRawBufferPointer, flow: FlowVerdict,
         scratch: PatternScratch, variables: UnsafeMutablePointer<Int>, uriScratch: UnsafeMutableRawBufferPointer,
         base64Scratch: UnsafeMutableRawBufferPointer, bodyDecoder: HTTPBodyDecoder) {
        self.uriScratch = uriScratch
        self.base64Scratch = base64Scratch
        self.bodyDecoder = bodyDecoder
        self.frame = frame
        self.endpoints = endpoints
        self.isStream = isStream
        self.bytes = bytes
        self.payload = payload
        self.flow = flow
        self.scratch = scratch
        self.variables = variables
    }

    /// The bytes of `buffer`: a range of the payload (parsing HTTP once, on first
    /// need), the normalized URI (made once, on first need, in `uriScratch`), the
    /// decoded body (`HTTPBodyDecoder`, once), or what `base64_decode` decoded.
    mutating func bytes(_ buffer: InspectionBuffer) -> UnsafeRawBufferPointer? {
        if buffer == .raw { return payload }
        if buffer == .base64Decoded { return UnsafeRawBufferPointer(rebasing: base64Scratch[0..<base64Count]) }
        if http == nil { http = HTTPBuffers(parsing: payload) }
        guard let r = http!.range(buffer, payloadCount: payload.count) else { return nil }
        let raw = UnsafeRawBufferPointer(rebasing: payload[r])
        if buffer == .fileData || buffer == .httpClientBody, let decoded = decodedBody() { return decoded }
        guard buffer == .httpURI else { return raw }
        if normalizedURI == nil {
            normalizedURI = raw.isEmpty ? raw
                : UnsafeRawBufferPointer(rebasing: uriScratch[0..<URINormalizer.normalize(raw, into: uriScratch)])
        }
        return normalizedURI
    }

    /// The normalized request URI, when the payload has one that normalizing changes
    /// (it has `%`, `\\`, `//` or a `.` segment); else nil, and an unchanged URI is
    /// kept as its own normal form, so it is never normalized.
    mutating func encodedURI() -> UnsafeRawBufferPointer? {
        guard payload.count >= 8, payload[0] >= UInt8(ascii: "A"), payload[0] <= UInt8(ascii: "Z"),
              let raw = bytes(.httpRawURI) else { return nil }
        for i in raw.indices {
            let c = raw[i]
            if c == UInt8(ascii: "%") || c == UInt8(ascii: "\\")
                || (c == UInt8(ascii: "/") && i + 1 < raw.count && (raw[i + 1] == UInt8(ascii: "/") || raw[i + 1] == UInt8(ascii: "."))) {
                return bytes(.httpURI)
            }
        }
        normalizedURI = raw
        return nil
    }

    /// Where the payload's HTTP request ends, when its length is known (`HTTPBuffers.end`).
    mutating func requestEnd() -> Int? {
        if http == nil { http = HTTPBuffers(parsing: payload) }
        return http!.end
    }

    /// The HTTP body dechunked and inflated, when the message's headers declare such a
    /// coding; else nil (and the body is seen as it came).
    mutating func decodedBody() -> UnsafeRawBufferPointer? {
        if let decoded { return decoded }
        if http == nil { http = HTTPBuffers(parsing: payload) }
        var result: UnsafeRawBufferPointer? = nil
        if let h = http!.header, let b = http!.body, !b.isEmpty {
            result = bodyDecoder.decode(header: UnsafeRawBufferPointer(rebasing: payload[h]), body: UnsafeRawBufferPointer(rebasing: payload[b]))
        }
        decoded = .some(result)
        return result
    }

    /// Whether `rule` fires on this packet. The rule is read in place: cheap tests
    /// first (protocol, flow, flags, sizes), then addresses and ports, then detection.
    mutating func matches(_ rule: UnsafePointer<SnortRule>) -> Bool {
        switch rule.pointee.proto {
        case .tcp: guard frame.layers.contains(.tcp) else { return false }
        case .udp: guard frame.layers.contains(.udp) else { return false }
        case .icmp: guard frame.isICMP else { return false }
        case .ip: break
        }
        switch rule.pointee.flow.direction {
        case .any: break
        case .toServer: guard flow.toServer else { return false }
        case .toClient: guard !flow.toServer else { return false }
        }
        if rule.pointee.flow.established && !flow.established { return false }
        if rule.pointee.flow.notEstablished && flow.established { return false }
        if rule.pointee.flow.onlyStream && !isStream { return false }
        if rule.pointee.flow.noStream && isStream { return false }
        if let f = rule.pointee.tcpFlags, !(frame.layers.contains(.tcp) && f.matches(frame.tcpFlags)) { return false }
        if let d = rule.pointee.payloadSize, !d.matches(payload.count) { return false }
        for t in rule.pointee.headerTests {
            guard let v = headerValue(t.field), t.test.matches(v) else { return false }
        }
        if let f = rule.pointee.fragmentBits {
            guard frame.layers.contains(.ipv4), f.matches(UInt8(truncatingIfNeeded: bytes.loadBE16(at: Int(frame.l3Offset) + 6) >> 13)) else { return false }
        }
        if rule.pointee.sameIP && endpoints.source != endpoints.destination { return false }
        if let o = rule.pointee.ipOption {
            guard frame.layers.contains(.ipv4) else { return false }
            // The parsed IPv4 header lies in the frame (`ParsedFrame` checked its length).
            let l3 = Int(frame.l3Offset), headerLength = Int(bytes.load(fromByteOffset: l3, as: UInt8.self) & 0x0F) * 4
            guard o.matches(UnsafeRawBufferPointer(start: bytes + l3 + 20, count: max(0, headerLength - 20))) else { return false }
        }
        if let r = rule.pointee.rpc, !r.matches(payload, tcp: frame.layers.contains(.tcp)) { return false }
        if let t = rule.pointee.streamSize {
            // TCP sessions the flow table tracks only, as stream5's.
            guard let (client, server) = flow.streamBytes, t.matches(client: client, server: server) else { return false }
        }
        guard endpointsMatch(rule) else { return false }
        if let u = rule.pointee.uriLength {
            guard let r = bytes(rule.pointee.uriLengthNormalized ? .httpURI : .httpRawURI), u.matches(r.count) else { return false }
        }
        for f in rule.pointee.flowbits where !flowbitsHold(f) { return false }
        steps = 0
        guard evaluate(rule.pointee.detection, 0, cursor: Cursor(buffer: .raw, position: 0, isSet: false)) else { return false }
        for f in rule.pointee.flowbits { apply(f) }
        return true
    }

    /// A header field's value, or nil if the packet has no such header (ICMP fields of
    /// a non-ICMP packet or a later fragment, TCP fields of a non-TCP packet).
    func headerValue(_ field: HeaderTest.Field) -> UInt64? {
        let l3 = Int(frame.l3Offset), l4 = Int(frame.l4Offset)
        let isICMP = frame.isICMP && !frame.layers.contains(.fragment)
        let icmpLength = Int(frame.payloadOffset) + Int(frame.payloadLength) - l4
        let v6 = frame.layers.contains(.ipv6)
        switch field {
        // IPv6: the hop limit, the traffic class; the ID and fragment offset are IPv4's.
        case .ttl: return UInt64(bytes.load(fromByteOffset: l3 + (v6 ? 7 : 8), as: UInt8.self))
        case .tos: return v6 ? UInt64(UInt8(truncatingIfNeeded: bytes.loadBE16(at: l3) >> 4)) : UInt64(bytes.load(fromByteOffset: l3 + 1, as: UInt8.self))
        case .id: return v6 ? nil : UInt64(bytes.loadBE16(at: l3 + 4))
        case .ipProto: return UInt64(frame.ipProtocol)
        case .fragOffset: return v6 ? nil : UInt64(bytes.loadBE16(at: l3 + 6) & 0x1FFF) * 8  // in bytes, as Snort compares it
        case .seq: return frame.layers.contains(.tcp) ? UInt64(bytes.loadBE32(at: l4 + 4)) : nil
        case .ack: return frame.layers.contains(.tcp) ? UInt64(bytes.loadBE32(at: l4 + 8)) : nil
        case .window: return frame.layers.contains(.tcp) ? UInt64(bytes.loadBE16(at: l4 + 14)) : nil
        case .icmpType: return isICMP && icmpLength >= 1 ? UInt64(bytes.load(fromByteOffset: l4, as: UInt8.self)) : nil
        case .icmpCode: return isICMP && icmpLength >= 2 ? UInt64(bytes.load(fromByteOffset: l4 + 1, as: UInt8.self)) : nil
        case .icmpID, .icmpSeq:
            // Only echo requests and replies, as Snort's.
            guard isICMP, icmpLength >= 8, Self.icmpTypesWithIDs.contains(bytes.load(fromByteOffset: l4, as: UInt8.self)) else { return nil }
            return UInt64(bytes.loadBE16(at: l4 + (field == .icmpID ? 4 : 6)))
        }
    }

    /// Echo reply and request: ICMP's 0 and 8, ICMPv6's 129 and 128.
    static let icmpTypesWithIDs: Set<UInt8> = [0, 8, 128, 129]

    /// Whether a flowbits check holds (changes always do, before detection). A packet
    /// without a tracked flow has no flowbits: every check fails, `isnotset` too.
    func flowbitsHold(_ f: Flowbits) -> Bool {
        guard let words = flow.flowbits else { return f.operation != .isset && f.operation != .isnotset }
        let isSet = { (bit: Int) -> Bool in words[bit >> 6] & (1 << UInt64(bit & 63)) != 0 }
        switch f.operation {
        case .isset: return f.requiresAll ? !f.bits.isEmpty && f.bits.allSatisfy(isSet) : f.bits.contains(where: isSet)
        case .isnotset: return f.requiresAll ? !f.bits.contains(where: isSet) : f.bits.isEmpty || !f.bits.allSatisfy(isSet)
        default: return true
        }
    }

    /// A flowbits change, once the rule matched (untracked flows keep no bits).
    func apply(_ f: Flowbits) {
        guard let words = flow.flowbits else { return }
        func change(_ bit: Int, _ op: (inout UInt64, UInt64) -> Void) { op(&words[bit >> 6], 1 << UInt64(bit & 63)) }
        switch f.operation {
        case .set: for b in f.bits { change(b) { $0 |= $1 } }
        case .setx:
            for b in f.groupBits { change(b) { $0 &= ~$1 } }
            for b in f.bits { change(b) { $0 |= $1 } }
        case .unset, .reset: for b in f.bits { change(b) { $0 &= ~$1 } }
        case .toggle: for b in f.bits { change(b) { $0 ^= $1 } }
        case .isset, .isnotset: break
        }
    }

    func endpointsMatch(_ r: UnsafePointer<SnortRule>) -> Bool {
        let ports = frame.hasPorts
        func side(_ src: UInt128, _ sp: UInt16, _ dst: UInt128, _ dp: UInt16) -> Bool {
            r.pointee.source.contains(src) && r.pointee.destination.contains(dst)
                && (!ports || (r.pointee.sourcePorts.contains(sp) && r.pointee.destinationPorts.contains(dp)))
        }
        return side(endpoints.source, frame.sourcePort, endpoints.destination, frame.destinationPort)
            || (r.pointee.bidirectional && side(endpoints.destination, frame.destinationPort, endpoints.source, frame.sourcePort))
    }

    struct Cursor {
        var buffer: InspectionBuffer
        var position: Int
        /// An option has placed it (Snort's detection pointer is set): what asn1's
        /// relative_offset and ftpbounce need.
        var isSet = true

        /// After file_data or base64_data, options without a buffer of their own read the
        /// decoded bytes, from their start (Snort's alternate detect buffer).
        var isInDecodedBuffer: Bool { buffer == .fileData || buffer == .base64Decoded }
    }

    mutating func evaluate(_ options: [DetectionOption], _ index: Int, cursor: Cursor) -> Bool {
        guard index < options.count else { return true }
        switch options[index] {
        case .fileData:
            guard bytes(.fileData) != nil else { return false }
            return evaluate(options, index + 1, cursor: Cursor(buffer: .fileData, position: 0))
        case .base64Decode(let d):
            // From the payload's start, or from the cursor in its buffer.
            guard let source = bytes(d.relative ? cursor.buffer : .raw) else { return false }
            let start = (d.relative ? cursor.position : 0) + d.offset
            guard start < source.count else { return false }
            let input = UnsafeRawBufferPointer(rebasing: source[start..<min(source.count, start + base64Scratch.count)])
            guard let n = Base64Decoding.decode(input, limit: d.bytes, into: base64Scratch) else { return false }
            base64Count = n
            return evaluate(options, index + 1, cursor: cursor)
        case .base64Data:
            guard base64Count > 0 else { return false }
            return evaluate(options, index + 1, cursor: Cursor(buffer: .base64Decoded, position: 0))
        case .asn1(let check):
            // Always the packet's payload; relative: from the cursor, which must be in it.
            if check.relative && (cursor.buffer != .raw || !cursor.isSet) { return false }
            let start = (check.relative ? cursor.position : 0) + check.offset
            return check.holds(in: payload, from: start) && evaluate(options, index + 1, cursor: cursor)
        case .ftpBounce:
            guard cursor.isSet, let r = bytes(cursor.buffer), let address = Self.portCommandAddress(r, from: cursor.position) else { return false }
            return endpoints.source != IPAddressing.mapped(address) && evaluate(options, index + 1, cursor: cursor)
        case .dataAt(let offset, let relative, let negated):
            guard let r = bytes(relative || cursor.isInDecodedBuffer ? cursor.buffer : .raw) else { return false }
            let exists = (relative ? cursor.position : 0) + value(offset) < r.count
            return exists != negated && evaluate(options, index + 1, cursor: cursor)
        case .byteTest(let t):
            guard let (n, _, _) = read(t.read, cursor) else { return false }
            let v = UInt64(truncatingIfNeeded: value(t.value))
            let holds: Bool = switch t.op {
            case .less: n < v
            case .greater: n > v
            case .lessOrEqual: n <= v
            case .greaterOrEqual: n >= v
            case .equal: n == v
            case .and: n & v != 0
            case .xor: n ^ v != 0
            }
            return holds != t.negated && evaluate(options, index + 1, cursor: cursor)
        case .byteJump(let j):
            guard let (n, end, buffer) = read(j.read, cursor), let r = bytes(buffer) else { return false }
            var distance = Int(truncatingIfNeeded: n) &* j.multiplier
            if j.align { distance = (distance + 3) & ~3 }
            let origin = switch j.from {
            case .afterRead: end
            case .beginning: 0
            case .end: r.count
            }
            let target = origin + distance + value(j.postOffset)
            guard target >= 0, target <= r.count else { return false }
            return evaluate(options, index + 1, cursor: Cursor(buffer: buffer, position: target))
        case .byteMath(let m):
            // The cursor stays where it was.
            guard let (n, _, _) = read(m.read, cursor),
                  let result = m.apply(UInt32(truncatingIfNeeded: n), UInt32(truncatingIfNeeded: value(m.rvalue))) else { return false }
            variables[m.slot] = Int(result)
            return evaluate(options, index + 1, cursor: cursor)
        case .byteExtract(let e):
            // It moves the cursor past the bytes it read, as Snort's does.
            guard let (n, end, buffer) = read(e.read, cursor) else { return false }
            var v = Int(truncatingIfNeeded: n) &* e.multiplier
            if e.align > 0 { v = (v + e.align - 1) / e.align * e.align }
            variables[e.slot] = v
            return evaluate(options, index + 1, cursor: Cursor(buffer: buffer, position: end))
        case .pcre(let p):
            // Relative: the subject starts at the cursor, so `^` anchors there (as Snort).
            guard let bytes = bytes(p.buffer) else { return false }
            let base = p.relative && cursor.buffer == p.buffer ? min(cursor.position, bytes.count) : 0
            let subject = UnsafeRawBufferPointer(rebasing: bytes[base...])
            // Only raw and body matches move the cursor; an HTTP-buffer pcre leaves it.
            let moves = p.buffer == .raw || p.buffer == .fileData || p.buffer == .base64Decoded
            var from = 0
            while true {
                switch p.pattern.search(subject, from: from, scratch: scratch) {
                case .failed: return false
                case .noMatch: return p.negated && evaluate(options, index + 1, cursor: cursor)
                case .match(let m):
                    if p.negated { return false }
                    let next = moves ? Cursor(buffer: p.buffer, position: base + m.upperBound) : cursor
                    if evaluate(options, index + 1, cursor: next) { return true }
                    // Search again past this match's start, unless nothing new can come of it.
                    steps += 1
                    guard moves, !p.pattern.isAnchored, steps < Self.backtrackLimit, m.lowerBound < subject.count else { return false }
                    from = m.lowerBound + 1
                }
            }
        case .content(let c):
            guard let bytes = bytes(c.buffer) else { return false }
            var start: Int, end: Int
            if c.isRelative {
                start = (cursor.buffer == c.buffer ? cursor.position : 0) + (c.distance.map(value) ?? 0)
                end = c.within.map { start + value($0) } ?? bytes.count
            } else {
                start = c.offset.map(value) ?? 0
                end = c.depth.map { start + value($0) } ?? bytes.count
            }
            start = max(start, 0)
            end = min(end, bytes.count)
            if c.negated {
                return Self.find(c, in: bytes, from: start, to: end) == nil && evaluate(options, index + 1, cursor: cursor)
            }
            var from = start
            while let at = Self.find(c, in: bytes, from: from, to: end) {
                if evaluate(options, index + 1, cursor: Cursor(buffer: c.buffer, position: at + c.bytes.count)) { return true }
                steps += 1
                guard steps < Self.backtrackLimit else { return false }
                from = at + 1
            }
            return false
        }
    }

    /// A rule number's value in this packet.
    func value(_ n: RuleNumber) -> Int {
        switch n {
        case .constant(let v): return v
        case .variable(let slot): return variables[slot]
        }
    }

    /// Reads the number `r` describes: from the cursor's buffer when relative, else
    /// from the start of the payload (or of the body after `file_data`, or of the decoded
    /// bytes after `base64_data`). Returns the
    /// number (unsigned 32-bit, as Snort's), where the bytes it used end, and the
    /// buffer; nil if the bytes lie outside the buffer or a text number has no digit.
    mutating func read(_ r: ByteRead, _ cursor: Cursor) -> (UInt64, Int, InspectionBuffer)? {
        let buffer = r.relative || cursor.isInDecodedBuffer ? cursor.buffer : .raw
        guard let data = bytes(buffer) else { return nil }
        let at = (r.relative ? cursor.position : 0) + value(r.offset)
        // Reading nothing (byte_jump), only where the jump lands is checked, as Snort's.
        if r.count == 0 { return (0, at, buffer) }
        guard at >= 0, at + r.count <= data.count else { return nil }
        let p = UnsafeRawBufferPointer(rebasing: data[at..<(at + r.count)])
        var n: UInt64 = 0
        var used = r.count
        if let base = r.base {
            guard let (v, consumed) = Self.parseText(p, base: base) else { return nil }
            (n, used) = (v, consumed)
        } else {
            for k in 0..<r.count { n = n << 8 | UInt64(p[r.littleEndian ? r.count - 1 - k : k]) }
        }
        if let mask = r.bitmask { n = (n & UInt64(mask)) >> UInt64(mask.trailingZeroBitCount) }
        return (n, at + used, buffer)
    }

    /// A number written in `text` as C's strtoul reads it: blanks and a `+`, then (base
    /// 16 or 0) an optional `0x`, then digits up to the first other byte; base 0 takes
    /// `0x` as hex and a leading `0` as octal. Clamped to 32 bits. Returns the value
    /// and the bytes used; nil if there is no digit (or a `-`).
    static func parseText(_ text: UnsafeRawBufferPointer, base given: Int) -> (UInt64, Int)? {
        var k = 0
        while k < text.count && (text[k] == 0x20 || (0x09...0x0D).contains(text[k])) { k += 1 }
        if k < text.count && text[k] == UInt8(ascii: "+") { k += 1 }
        var base = given
        let hexPrefix = k + 1 < text.count && text[k] == 0x30 && text[k + 1] | 0x20 == 0x78
        if (base == 16 || base == 0) && hexPrefix && k + 2 < text.count && RuleParser.hexValue(text[k + 2]) != nil {
            k += 2
            base = 16
        } else if base == 0 {
            base = k < text.count && text[k] == 0x30 ? 8 : 10
        }
        var n: UInt64 = 0
        var digits = 0
        while k < text.count, let d = RuleParser.hexValue(text[k]), Int(d) < base {
            n = min(n &* UInt64(base) &+ UInt64(d), UInt64(UInt32.max))
            k += 1
            digits += 1
        }
        return digits > 0 ? (n, k) : nil
    }

    /// The IPv4 address an FTP `PORT` argument names (`h1,h2,h3,h4,p1,p2`), read at
    /// `position` as Snort's `ftpbounce` reads it: blanks skipped, then four decimal
    /// numbers of at most 255, each ended by a comma, a blank or the data's end; nil if
    /// there are not four.
    static func portCommandAddress(_ data: UnsafeRawBufferPointer, from position: Int) -> UInt32? {
        func isBlank(_ b: UInt8) -> Bool { b == 0x20 || (0x09...0x0D).contains(b) }
        var i = position
        while i < data.count && isBlank(data[i]) { i += 1 }
        var address: UInt32 = 0
        for _ in 0..<4 {
            guard i < data.count, (0x30...0x39).contains(data[i]) else { return nil }
            var value: UInt32 = 0
            while i < data.count, data[i] != UInt8(ascii: ","), !isBlank(data[i]) {
                guard (0x30...0x39).contains(data[i]) else { return nil }
                value = value * 10 + UInt32(data[i] - 0x30)
                guard value <= 0xFF else { return nil }
                i += 1
            }
            address = address << 8 | value
            if i < data.count && data[i] == UInt8(ascii: ",") { i += 1 }
        }
        return address
    }

    /// The first position in `from ..< to` where `c` fits entirely, or nil.
    static func find(_ c: ContentMatch, in bytes: UnsafeRawBufferPointer, from: Int, to end: Int) -> Int? {
        let n = c.bytes.count
        guard n > 0, end - from >= n else { return nil }
        return c.bytes.withUnsafeBufferPointer { pattern -> Int? in
            let first = pattern[0]
            let fold = MultiPatternMatcher.fold
            var i = from
            while i + n <= end {
                if c.nocase {
                    if fold[Int(bytes[i])] == fold[Int(first)] {
                        var k = 1
                        while k < n && fold[Int(bytes[i + k])] == fold[Int(pattern[k])] { k += 1 }
                        if k == n { return i }
                    }
                } else if bytes[i] == first {
                    var k = 1
                    while k < n && bytes[i + k] == pattern[k] { k += 1 }
                    if k == n { return i }
                }
                i += 1
            }
            return nil
        }
    }
}
