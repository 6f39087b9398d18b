import FlexWire

/// IPv4 and IPv6 reassembly as Snort 2.9's frag3 does it with its defaults, for one
/// instance.
///
/// - Datagrams are keyed by source, destination, IP ID (IPv6: the fragment header's
///   32-bit identification) and protocol. An IPv6 fragment's data starts after its
///   fragment header; extension headers before it are not carried into the rebuilt
///   datagram.
/// - Overlaps follow frag3's default `bsd` policy: where a new fragment overlaps data
///   already held, the new data wins only over data from a fragment that started at a
///   higher offset; elsewhere the old data stays (so an exact duplicate changes nothing).
/// - A fragment other than the last carries a multiple of 8 bytes (the rest is cut); an
///   empty fragment is dropped; a datagram reaching past 65535 bytes is marked bad and
///   never rebuilt; a datagram idle for `timeoutNanoseconds` (60 s) starts over.
/// - Limits: `maximumDatagrams` in progress (8,192) and `memoryCap` bytes of fragment
///   data (4 MiB); past either, the oldest datagram is dropped. Everything is counted.
///
/// `insert` returns the rebuilt datagram when a fragment completes one: the completing
/// fragment's Ethernet and IP headers (IPv4: 20 bytes, its addresses, ID and TTL, the
/// fragment bits cleared; IPv6: the 40-byte fixed header, next header set to the
/// fragmented protocol), then the whole payload, as frag3's pseudo-packet.
final class Defragmenter {
    struct Key: Hashable {
        var source: UInt128, destination: UInt128, id: UInt32, proto: UInt8
        /// IPv4 and IPv6 never share a datagram (an IPv4-mapped IPv6 address is not the
        /// IPv4 host).
        var isIPv6: Bool
    }
    /// Bytes `start ..< end` of the payload, written by a fragment starting at `from`.
    struct Piece {
        var start: Int, end: Int, from: Int
    }
    struct Datagram {
        var data: [UInt8] = []
        var pieces: [Piece] = []
        /// The payload's length, once the last fragment (MF clear) came.
        var total: Int?
        var bad = false
        var lastSeen: UInt64
        var firstSeen: UInt64
        /// Rules that alerted on its fragments (not repeated on the rebuilt datagram).
        var alerted: [Int32] = []
    }

    struct Counters: Sendable {
        var fragments = 0
        var reassembled = 0
        /// Datagrams dropped: bad (past 65535 bytes), timed out, or over the limits.
        var dropped = 0
        var overlaps = 0
    }

    static let maximumDatagrams = 8192
    static let memoryCap = 4 << 20
    static let timeoutNanoseconds: UInt64 = 60_000_000_000

    var datagrams: [Key: Datagram] = [:]
    var memory = 0
    var counters = Counters()
    /// The rebuilt frame: Ethernet (with up to two tags), the IP header, up to 65,535
    /// bytes of payload.
    let rebuilt = UnsafeMutableRawBufferPointer.allocate(byteCount: 22 + 40 + 65535, alignment: 64)

    deinit { rebuilt.deallocate() }

    /// Where a fragment lies in its datagram: its data's offset in the frame and where
    /// the IP datagram ends there (by the IP header, not by a transport header's
    /// length), its offset in the datagram's payload, whether more follow, its
    /// identification, and the protocol fragmented (IPv6: the fragment header's next
    /// header, the same in every fragment).
    struct Position {
        var data: Int, end: Int, start: Int, more: Bool, id: UInt32, proto: UInt8
    }

    /// The position of the fragment in `frame`, parsed at least to L3 as `f`.
    static func position(_ f: ParsedFrame, _ frame: UnsafeRawBufferPointer) -> Position {
        let l3 = Int(f.l3Offset)
        let bytes = frame.baseAddress!
        if f.layers.contains(.ipv6) {
            let ip = try? IPv6Header(UnsafeMutableRawBufferPointer(mutating: UnsafeRawBufferPointer(rebasing: frame[l3...])))
            guard let ip, let header = ip.fragmentHeaderOffset, let p = ip.fragmentPosition else {
                return Position(data: Int(f.l4Offset), end: Int(f.frameLength), start: 0, more: false, id: 0, proto: f.ipProtocol)
            }
            return Position(data: l3 + header + 8, end: l3 + ip.totalLength, start: p.offset, more: p.more,
                            id: ip.fragmentIdentification, proto: bytes.load(fromByteOffset: l3 + header, as: UInt8.self))
        }
        let word = bytes.loadBE16(at: l3 + 6)
        let end = min(l3 + Int(bytes.loadBE16(at: l3 + 2)), frame.count)
        return Position(data: Int(f.l4Offset), end: max(end, Int(f.l4Offset)), start: Int(word & 0x1FFF) * 8, more: word & 0x2000 != 0,
                        id: UInt32(bytes.loadBE16(at: l3 + 4)), proto: f.ipProtocol)
    }

    /// The key of the datagram a fragment belongs to.
    static func key(_ f: ParsedFrame, _ frame: UnsafeRawBufferPointer) -> Key {
        let a = PacketAddresses(f, frame.baseAddress!)
        let p = position(f, frame)
        return Key(source: a.source, destination: a.destination, id: p.id, proto: p.proto, isIPv6: f.layers.contains(.ipv6))
    }

    /// Adds the fragment in `frame` (parsed at L3 as `f`); returns the rebuilt frame's
    /// bytes when it completes its datagram.
    func insert(_ frame: UnsafeMutableRawBufferPointer, _ f: ParsedFrame, now: UInt64) -> (UnsafeMutableRawBufferPointer, [Int32])? {
        counters.fragments &+= 1
        let base = UnsafeRawPointer(frame.baseAddress!)
        let l3 = Int(f.l3Offset)
        let position = Self.position(f, UnsafeRawBufferPointer(frame))
        let (l4, start, more) = (position.data, position.start, position.more)
        var length = position.end - l4
        if more { length &= ~7 }
        guard length > 0 else { return nil }
        let v6 = f.layers.contains(.ipv6)
        let headerLength = v6 ? IPv6Header.length : 20
        let key = Self.key(f, UnsafeRawBufferPointer(frame))
        // (A capture's clock may step back: only time that went forward ages a datagram.)
        if let d = datagrams[key], now > d.lastSeen && now - d.lastSeen >= Self.timeoutNanoseconds {
            drop(key)
        }
        if datagrams[key] == nil {
            if datagrams.count >= Self.maximumDatagrams { dropOldest() }
            datagrams[key] = Datagram(lastSeen: now, firstSeen: now)
        }
        let end = start + length
        var d = datagrams.removeValue(forKey: key)!
        d.lastSeen = now
        if end > 65535 - (v6 ? 0 : 20) { d.bad = true }
        if !d.bad {
            if !more {
                // A second last fragment that ends inside data already held: a teardrop.
                if let total = d.total, end < total, d.pieces.contains(where: { $0.end > end }) { d.bad = true }
                d.total = max(d.total ?? 0, end)
            } else if let total = d.total, end > total {
                // Past the last fragment's end: discarded, as frag3 does.
                datagrams[key] = d
                return nil
            }
        }
        if !d.bad {
            if d.data.count < end {
                memory += end - d.data.count
                d.data += repeatElement(0, count: end - d.data.count)
            }
            place(base + l4, start: start, end: end, into: &d)
        }
        let complete = !d.bad && d.total.map { total in Self.covers(d.pieces, total) } == true
        guard complete, let total = d.total else {
            datagrams[key] = d
            while memory > Self.memoryCap && !datagrams.isEmpty { dropOldest() }
            return nil
        }
        memory -= d.data.count
        counters.reassembled &+= 1
        // The completing fragment's link and IP headers, unfragmented, then the payload.
        let out = rebuilt.baseAddress!
        out.copyMemory(from: base, byteCount: l3 + headerLength)
        if v6 {
            out.storeBytes(of: UInt16(total).bigEndian, toByteOffset: l3 + 4, as: UInt16.self)
            out.storeBytes(of: position.proto, toByteOffset: l3 + 6, as: UInt8.self)
        } else {
            out.storeBytes(of: UInt8(0x45), toByteOffset: l3, as: UInt8.self)
            out.storeBytes(of: UInt16(20 + total).bigEndian, toByteOffset: l3 + 2, as: UInt16.self)
            out.storeBytes(of: UInt16(0), toByteOffset: l3 + 6, as: UInt16.self)
            out.storeBytes(of: UInt16(0), toByteOffset: l3 + 10, as: UInt16.self)
        }
        d.data.withUnsafeBytes { (out + l3 + headerLength).copyMemory(from: $0.baseAddress!, byteCount: total) }
        if !v6 {
            var sum = InternetChecksum()
            sum.add(bytes: out + l3, count: 20)
            out.storeBytes(of: sum.value.bigEndian, toByteOffset: l3 + 10, as: UInt16.self)
        }
        return (UnsafeMutableRawBufferPointer(start: out, count: l3 + headerLength + total), d.alerted)
    }

    /// Writes the fragment's bytes where the policy lets them: into gaps, and over
    /// pieces that came from fragments starting at a higher offset.
    func place(_ bytes: UnsafeRawPointer, start: Int, end: Int, into d: inout Datagram) {
        var pieces: [Piece] = []
        pieces.reserveCapacity(d.pieces.count + 2)
        /// Ranges the new fragment writes.
        var written: [Range<Int>] = []
        var cursor = start
        var overlapped = false
        for p in d.pieces {
            guard p.end > start && p.start < end else {
                pieces.append(p)
                continue
            }
            overlapped = true
            // The gap before this piece is the new fragment's.
            if p.start > cursor { written.append(cursor..<p.start) }
            let overlapStart = max(p.start, start), overlapEnd = min(p.end, end)
            if start < p.from {
                // New data wins over this piece's overlap.
                if p.start < overlapStart { pieces.append(Piece(start: p.start, end: overlapStart, from: p.from)) }
                written.append(overlapStart..<overlapEnd)
                if overlapEnd < p.end { pieces.append(Piece(start: overlapEnd, end: p.end, from: p.from)) }
            } else {
                pieces.append(p)
            }
            cursor = max(cursor, overlapEnd)
        }
        if cursor < end { written.append(cursor..<end) }
        if overlapped { counters.overlaps &+= 1 }
        d.data.withUnsafeMutableBytes { out in
            for r in written where !r.isEmpty {
                (out.baseAddress! + r.lowerBound).copyMemory(from: bytes + (r.lowerBound - start), byteCount: r.count)
                pieces.append(Piece(start: r.lowerBound, end: r.upperBound, from: start))
            }
        }
        pieces.sort { $0.start < $1.start }
        d.pieces = pieces
    }

    /// Whether the pieces cover `0 ..< total` without a hole.
    static func covers(_ pieces: [Piece], _ total: Int) -> Bool {
        var reached = 0
        for p in pieces where p.start <= reached { reached = max(reached, p.end) }
        return reached >= total
    }

    /// Notes that `rule` alerted on a fragment of `key`'s datagram (at most 8 kept).
    func noteAlert(_ rule: Int32, key: Key) {
        guard var d = datagrams[key], d.alerted.count < 8, !d.alerted.contains(rule) else { return }
        d.alerted.append(rule)
        datagrams[key] = d
    }

    func drop(_ key: Key) {
        guard let d = datagrams.removeValue(forKey: key) else { return }
        memory -= d.data.count
        counters.dropped &+= 1
    }

    func dropOldest() {
        guard let oldest = datagrams.min(by: { $0.value.lastSeen < $1.value.lastSeen })?.key else { return }
        drop(oldest)
    }
}
