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
    let payload: UnsafeRawBufferPointer
    let flow: FlowVerdict
    let scratch: PatternScratch
    private var http: HTTPBuffers?
    private var steps = 0

    static let backtrackLimit = 256

    init(frame: ParsedFrame, payload: UnsafeRawBufferPointer, flow: FlowVerdict, scratch: PatternScratch) {
        self.frame = frame
        self.payload = payload
        self.flow = flow
        self.scratch = scratch
    }

    /// The bytes of `buffer` in the payload (parsing HTTP once, on first need).
    mutating func range(_ buffer: InspectionBuffer) -> Range<Int>? {
        if buffer == .raw { return 0..<payload.count }
        if http == nil { http = HTTPBuffers(parsing: payload) }
        return http!.range(buffer, payloadCount: payload.count)
    }

    /// Whether `rule` fires on this packet. The rule is read in place: cheap tests
    /// first (protocol, flow, flags, sizes), then addresses and ports, then detection.
    mutating func matches(_ rule: UnsafePointer<SnortRule>) -> Bool {
        switch rule.pointee.proto {
        case .tcp: guard frame.layers.contains(.tcp) else { return false }
        case .udp: guard frame.layers.contains(.udp) else { return false }
        case .icmp: guard frame.ipProtocol == 1 else { return false }
        case .ip: break
        }
        switch rule.pointee.flow.direction {
        case .any: break
        case .toServer: guard flow.toServer else { return false }
        case .toClient: guard !flow.toServer else { return false }
        }
        if rule.pointee.flow.established && !flow.established { return false }
        if rule.pointee.flow.notEstablished && flow.established { return false }
        if let f = rule.pointee.tcpFlags, !(frame.layers.contains(.tcp) && f.matches(frame.tcpFlags)) { return false }
        if let d = rule.pointee.payloadSize, !d.matches(payload.count) { return false }
        guard endpointsMatch(rule) else { return false }
        if let u = rule.pointee.uriLength {
            guard let r = range(.httpURI), u.matches(r.count) else { return false }
        }
        steps = 0
        return evaluate(rule.pointee.detection, 0, cursor: Cursor(buffer: .raw, position: 0))
    }

    func endpointsMatch(_ r: UnsafePointer<SnortRule>) -> Bool {
        let ports = frame.hasPorts
        func side(_ src: UInt32, _ sp: UInt16, _ dst: UInt32, _ dp: UInt16) -> Bool {
            r.pointee.source.contains(src) && r.pointee.destination.contains(dst)
                && (!ports || (r.pointee.sourcePorts.contains(sp) && r.pointee.destinationPorts.contains(dp)))
        }
        return side(frame.sourceAddress, frame.sourcePort, frame.destinationAddress, frame.destinationPort)
            || (r.pointee.bidirectional && side(frame.destinationAddress, frame.destinationPort, frame.sourceAddress, frame.sourcePort))
    }

    struct Cursor {
        var buffer: InspectionBuffer
        var position: Int
    }

    mutating func evaluate(_ options: [DetectionOption], _ index: Int, cursor: Cursor) -> Bool {
        guard index < options.count else { return true }
        switch options[index] {
        case .fileData:
            guard range(.fileData) != nil else { return false }
            return evaluate(options, index + 1, cursor: Cursor(buffer: .fileData, position: 0))
        case .dataAt(let offset, let relative, let negated):
            guard let r = range(relative ? cursor.buffer : .raw) else { return false }
            let exists = (relative ? cursor.position : 0) + offset < r.count
            return exists != negated && evaluate(options, index + 1, cursor: cursor)
        case .pcre(let p):
            // Relative: the subject starts at the cursor, so `^` anchors there (as Snort).
            guard let r = range(p.buffer) else { return false }
            let bytes = UnsafeRawBufferPointer(rebasing: payload[r])
            let base = p.relative && cursor.buffer == p.buffer ? min(cursor.position, bytes.count) : 0
            let subject = UnsafeRawBufferPointer(rebasing: bytes[base...])
            // Only raw and body matches move the cursor; an HTTP-buffer pcre leaves it.
            let moves = p.buffer == .raw || p.buffer == .fileData
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
            guard let r = range(c.buffer) else { return false }
            let bytes = UnsafeRawBufferPointer(rebasing: payload[r])
            var start: Int, end: Int
            if c.isRelative {
                start = (cursor.buffer == c.buffer ? cursor.position : 0) + (c.distance ?? 0)
                end = c.within.map { start + $0 } ?? bytes.count
            } else {
                start = c.offset ?? 0
                end = c.depth.map { start + $0 } ?? bytes.count
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
