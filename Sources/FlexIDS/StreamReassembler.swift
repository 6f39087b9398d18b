import FlexWire

/// TCP stream reassembly for one instance, as Snort 2.9's stream5 does it by default:
/// the client side of sessions to its default `ports client` list (data sent to the
/// server) is put in sequence order, and each run of it (a PDU) is inspected whole,
/// once, as a rebuilt packet, so that content split across segments is found and HTTP
/// sees a whole request. Raw segments are inspected as before.
///
/// - A PDU is flushed when the server's side sends (the conversation turns), when the
///   client sends FIN or either side RST, when it reaches `flushBytes`, and at the end
///   of the capture (`flushAll`). Only PDUs of two or more segments are inspected
///   again: one segment was seen whole as a packet.
/// - Overlaps: bytes already received win (a retransmission changes nothing; counted).
///   A segment past a hole is held (at most `maximumHeld` per session) until the hole
///   fills; past that, the PDU so far is flushed and the stream skips the hole (a gap,
///   counted).
/// - Memory: at most `memoryCap` bytes of stream data per instance; a session that
///   would pass it is dropped from reassembly (counted).
/// - A rebuilt packet carries the last segment's headers, its alerts name that segment
///   (the one that completed the PDU), and a rule that alerted on one of the PDU's raw
///   segments does not alert again on the PDU.
final class StreamReassembler {
    /// One session's client data since the last flush.
    struct Stream {
        var next: UInt32 = 0
        var data: [UInt8] = []
        var segments = 0
        /// The last segment of `data`: its packet number, time, flow verdict and
        /// headers (link layer to TCP).
        var lastPacket = 0
        var lastTime: UInt64 = 0
        var verdict = FlowVerdict(toServer: true, established: false, tracked: false)
        var header: [UInt8] = []
        /// Where the headers' IP header starts, and whether it is IPv6.
        var l3 = 0
        var isIPv6 = false
        var alerted: [Int32] = []
        /// Segments past a hole, ascending by sequence number.
        var held: [(sequence: UInt32, bytes: [UInt8], packet: Int)] = []

        var bytesHeld: Int { data.count + held.reduce(0) { $0 + $1.bytes.count } }
    }

    struct Counters: Sendable {
        /// Client segments taken in, PDUs inspected whole, segments that overlapped data
        /// held, holes skipped, sessions dropped over the memory cap.
        var segments = 0
        var pdus = 0
        var overlaps = 0
        var gaps = 0
        var dropped = 0
        /// Segments that lay too far ahead of the stream to be part of it.
        var outOfWindow = 0
    }

    static let flushBytes = 16384
    static let maximumHeld = 16
    /// How far ahead of the stream a segment may start and be held (1 MiB: more than
    /// any TCP window without scaling, and what a sender can have in flight here).
    static let window = 1 << 20
    static let memoryCap = 16 << 20
    /// The headers a rebuilt packet copies: at most this many bytes (longer IPv6
    /// extension chains are not rebuilt).
    static let maximumHeader = 512
    /// stream5's default `ports client` list.
    static let clientPorts: Set<UInt16> = [21, 23, 25, 42, 53, 80, 110, 111, 135, 136, 137, 139, 143, 445, 513, 514, 1433, 1521, 2401, 3306]

    /// Per flow slot, its session's stream in `streams` (-1: none). Streams are reused
    /// through `free`, so a session's state is mutated in place, never copied.
    let index: UnsafeMutablePointer<Int32>
    let slotCount: Int
    var streams: [Stream] = []
    var free: [Int32] = []
    var memory = 0
    var counters = Counters()
    /// Where a PDU's rebuilt packet is put: headers and up to `flushBytes` of data.
    let rebuilt = UnsafeMutableRawBufferPointer.allocate(byteCount: maximumHeader + flushBytes, alignment: 64)

    /// Reassembly for the flows of a table with `slotCount` slots.
    init(slotCount: Int) {
        self.slotCount = slotCount
        index = .allocate(capacity: slotCount)
        index.initialize(repeating: -1, count: slotCount)
    }

    deinit {
        index.deallocate()
        rebuilt.deallocate()
    }

    /// The stream of flow slot `slot`, made if it has none.
    func stream(_ slot: Int32) -> Int {
        if index[Int(slot)] < 0 {
            if let i = free.popLast() {
                index[Int(slot)] = i
            } else {
                index[Int(slot)] = Int32(streams.count)
                streams.append(Stream())
            }
        }
        return Int(index[Int(slot)])
    }

    /// Forgets the stream of `slot` (its buffers are kept for the next session).
    func release(_ slot: Int32) {
        let i = Int(index[Int(slot)])
        guard i >= 0 else { return }
        memory -= streams[i].bytesHeld
        streams[i].data.removeAll(keepingCapacity: true)
        streams[i].held.removeAll()
        streams[i].alerted.removeAll(keepingCapacity: true)
        streams[i].header.removeAll(keepingCapacity: true)
        streams[i].segments = 0
        free.append(Int32(i))
        index[Int(slot)] = -1
    }

    /// Takes a TCP packet of a tracked flow (after its own inspection, whose alerts are
    /// `alerted`) and calls `inspect` with each PDU it completes.
    func take(_ frame: UnsafeRawBufferPointer, _ f: ParsedFrame, _ verdict: FlowVerdict, packet: Int, time: UInt64,
              alerted: [Int32], inspect: (UnsafeMutableRawBufferPointer, Stream) -> Void) {
        let slot = verdict.slot
        guard slot >= 0, Int(slot) < slotCount else { return }
        if verdict.startsSession { release(slot) }
        let flags = TCPHeader.Flags(rawValue: f.tcpFlags)
        let serverPort = verdict.toServer ? f.destinationPort : f.sourcePort
        guard Self.clientPorts.contains(serverPort) else { return }
        let sequence = UnsafeRawPointer(frame.baseAddress!).loadBE32(at: Int(f.l4Offset) + 4)
        if !verdict.toServer || flags.contains(.rst) {
            // The server speaks, or the session resets: the client's PDU is complete.
            flush(slot, inspect)
            if flags.contains(.rst) { release(slot) }
            return
        }
        let known = index[Int(slot)] >= 0
        let i = stream(slot)
        if flags.contains(.syn) {
            release(slot)
            streams[stream(slot)].next = sequence &+ 1
            return
        }
        if !known { streams[i].next = sequence }  // picked up mid-stream
        let payload = UnsafeRawBufferPointer(start: frame.baseAddress! + Int(f.payloadOffset), count: Int(f.payloadLength))
        if !payload.isEmpty {
            counters.segments &+= 1
            let before = streams[i].bytesHeld
            streams[i].verdict = verdict
            // The headers a rebuilt PDU carries: this segment's (none if they are too long,
            // and then the PDU is not rebuilt).
            streams[i].header.removeAll(keepingCapacity: true)
            if Int(f.payloadOffset) <= Self.maximumHeader {
                streams[i].header.append(contentsOf: UnsafeRawBufferPointer(rebasing: frame[0..<Int(f.payloadOffset)]))
                (streams[i].l3, streams[i].isIPv6) = (Int(f.l3Offset), f.layers.contains(.ipv6))
            }
            for r in alerted where !streams[i].alerted.contains(r) && streams[i].alerted.count < 16 { streams[i].alerted.append(r) }
            insert(&streams[i], sequence: sequence, payload, packet: packet, time: time)
            memory += streams[i].bytesHeld - before
            if memory > Self.memoryCap {
                release(slot)
                counters.dropped &+= 1
                return
            }
        }
        if flags.contains(.fin) || streams[i].data.count >= Self.flushBytes || streams[i].held.count > Self.maximumHeld {
            flush(slot, inspect)
        }
    }

    /// Puts a segment's bytes in order: new bytes at `next` are appended (and any held
    /// segments they reach); bytes before `next` were received already; bytes past a
    /// hole are held.
    func insert(_ s: inout Stream, sequence: UInt32, _ payload: UnsafeRawBufferPointer, packet: Int, time: UInt64) {
        let ahead = Int32(bitPattern: sequence &- s.next)
        if ahead > 0 {
            // Only within a window of the stream: data far ahead is no segment of it
            // (and holding it would let a sender move the stream past real data).
            guard Int(ahead) <= Self.window else {
                counters.outOfWindow &+= 1
                return
            }
            let at = s.held.firstIndex { Int32(bitPattern: $0.sequence &- sequence) > 0 } ?? s.held.count
            s.held.insert((sequence, Array(payload), packet), at: at)
            return
        }
        let old = -Int(ahead)
        if old > 0 { counters.overlaps &+= 1 }
        if old < payload.count {
            s.data.append(contentsOf: UnsafeRawBufferPointer(rebasing: payload[old...]))
            s.next = sequence &+ UInt32(payload.count)
            s.segments += 1
            s.lastPacket = packet
            s.lastTime = time
        }
        // Held segments the stream now reaches.
        while let first = s.held.first, Int32(bitPattern: first.sequence &- s.next) <= 0 {
            s.held.removeFirst()
            first.bytes.withUnsafeBytes { insert(&s, sequence: first.sequence, $0, packet: max(packet, first.packet), time: time) }
        }
    }

    /// Inspects the session's PDU (two or more segments) and starts the next one; a
    /// hole that held segments wait behind is skipped.
    func flush(_ slot: Int32, _ inspect: (UnsafeMutableRawBufferPointer, Stream) -> Void) {
        let i = Int(index[Int(slot)])
        guard i >= 0 else { return }
        if streams[i].segments >= 2, !streams[i].header.isEmpty {
            // A long run (held segments that joined it) is inspected `flushBytes` at a time.
            var at = 0
            while at < streams[i].data.count {
                counters.pdus &+= 1
                inspect(rebuild(streams[i], from: at), streams[i])
                at += Self.flushBytes
            }
        }
        let before = streams[i].bytesHeld
        streams[i].data.removeAll(keepingCapacity: true)
        streams[i].segments = 0
        streams[i].alerted.removeAll(keepingCapacity: true)
        if streams[i].held.count > Self.maximumHeld, let first = streams[i].held.first {
            // The hole will not fill: skip it.
            counters.gaps &+= 1
            streams[i].next = first.sequence
            let held = streams[i].held
            streams[i].held.removeAll()
            let time = streams[i].lastTime
            for h in held { h.bytes.withUnsafeBytes { insert(&streams[i], sequence: h.sequence, $0, packet: h.packet, time: time) } }
        }
        memory += streams[i].bytesHeld - before
    }

    /// Flushes every session (the end of the capture).
    func flushAll(_ inspect: (UnsafeMutableRawBufferPointer, Stream) -> Void) {
        for slot in 0..<slotCount where index[slot] >= 0 { flush(Int32(slot), inspect) }
    }

    /// The PDU as a packet: the last segment's headers with the IP length fields set
    /// for the data, then up to `flushBytes` of the data from `start`.
    func rebuild(_ s: Stream, from start: Int) -> UnsafeMutableRawBufferPointer {
        let headerCount = s.header.count, count = min(s.data.count - start, Self.flushBytes)
        let out = rebuilt.baseAddress!
        s.header.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: headerCount) }
        s.data.withUnsafeBytes { (out + headerCount).copyMemory(from: $0.baseAddress! + start, byteCount: count) }
        if s.isIPv6 {
            out.storeBytes(of: UInt16(truncatingIfNeeded: headerCount - s.l3 - IPv6Header.length + count).bigEndian, toByteOffset: s.l3 + 4, as: UInt16.self)
        } else {
            out.storeBytes(of: UInt16(truncatingIfNeeded: headerCount - s.l3 + count).bigEndian, toByteOffset: s.l3 + 2, as: UInt16.self)
        }
        return UnsafeMutableRawBufferPointer(start: out, count: headerCount + count)
    }
}
