import CFlexSys
import FlexIO
import FlexWire
import Foundation

/// A kernel-bypass load generator in pktgen's manner, to measure a server's capacity
/// rather than its client's: request frames are built once (a seeded sample of the
/// workload, spread over the client sockets' source ports), then copied into mbufs and
/// sent in paced bursts, and replies are only counted, not parsed.
///
/// `search` finds the maximum loss-free forwarding rate (MLFFR, as K2 measures it) by
/// bisection: a rate passes when at most `tolerance` of the requests a trial offered went
/// unanswered (a request the transmit ring refused is offered and unanswered).
///
/// One thread uses it (queue 0 of the link's port), registered as an lcore.
final class FrameReplay {
    /// One paced run.
    struct Trial {
        var rate: Double
        var offered: UInt64 = 0
        var sent: UInt64 = 0
        /// Offered but not sent: the transmit ring was full, or no mbuf was free.
        var refused: UInt64 = 0
        var noBuffer: UInt64 = 0
        var answered: UInt64 = 0
        var seconds = 0.0

        /// What went unanswered; all of it when nothing was offered (no rate is shown to
        /// pass by a trial that sent nothing).
        var loss: Double { offered == 0 ? 1 : Double(offered - min(answered, offered)) / Double(offered) }
        var sentRate: Double { seconds > 0 ? Double(sent) / seconds : 0 }
        var answeredRate: Double { seconds > 0 ? Double(answered) / seconds : 0 }

        var line: String {
            String(format: "%7.3f M/s offered: sent %llu (ring full %llu, no mbuf %llu), answered %llu (%.3f M/s), lost %.4f %%",
                   rate / 1e6, sent, refused, noBuffer, answered, answeredRate / 1e6, loss * 100)
        }
    }

    let link: DPDKDatagramLink
    /// The frames back to back; frame `i` is `frames[offsets[i] ..< offsets[i + 1]]`.
    private let frames: [UInt8]
    private let offsets: [Int]
    private let out = PacketBatch(capacity: 32)
    private let rx = PacketBatch(capacity: 64)

    init(link: DPDKDatagramLink, format: WireFormat, workload: KVSWorkload, sockets: Int, count: Int = 8192, seed: UInt64 = 1) throws {
        self.link = link
        var rng = Xorshift(seed: seed)
        var frames: [UInt8] = []
        var offsets = [0]
        var payload: [UInt8] = []
        var frame = [UInt8](repeating: 0, count: 2048)
        for i in 0..<count {
            let get = rng.unit() < workload.getRatio
            let key = workload.key(workload.sampleKey(&rng))
            let id = UInt16(truncatingIfNeeded: i)
            payload.removeAll(keepingCapacity: true)
            payload += [UInt8(id >> 8), UInt8(id & 255), 0, 0, 0, 1, 0, 0]  // memcached's UDP frame header
            format.appendRequest(&payload, get: get, key: key, value: workload.value, opaque: UInt32(id))
            let endpoints = link.endpoints(socket: i % sockets)
            let n = try frame.withUnsafeMutableBytes { f in
                try payload.withUnsafeBytes { try FrameBuilder.udp(into: f, endpoints: endpoints, payload: $0) }
            }
            frames += frame[..<n]
            offsets.append(frames.count)
        }
        self.frames = frames
        self.offsets = offsets
    }

    /// Offers `rate` requests/s for `seconds`, then waits for stragglers until nothing
    /// has arrived for 20 ms. `receiving` false: never reads (a peer that stopped
    /// reading; what arrives stays in the ring).
    func trial(rate: Double, seconds: Double, receiving: Bool = true) -> Trial {
        var t = Trial(rate: rate)
        let port = link.port
        let count = offsets.count - 1
        var next = 0
        let start = monotonicNanoseconds()
        let end = start + UInt64(seconds * 1e9)
        var now = start
        // Frames go out in bursts, as a NIC's would come in: as many as 20 us of the rate
        // (1 to 32), each when the schedule has it due.
        let burst = max(1, min(out.capacity, Int(rate * 20e-6)))
        frames.withUnsafeBytes { all in
            while now < end {
                let due = min(Int(min(Double(now - start) * rate / 1e9, 1e15)) - Int(t.offered), out.capacity)
                if due >= burst {
                    let n = port.allocate(count: due, into: out)
                    for i in 0..<n {
                        var p = out[i]
                        let from = offsets[next], to = offsets[next + 1]
                        p.data.copyMemory(from: all.baseAddress! + from, byteCount: to - from)
                        p.length = UInt32(to - from)
                        out[i] = p
                        next = next + 1 == count ? 0 : next + 1
                    }
                    let sent = port.transmit(queue: 0, out)
                    if !out.isEmpty { port.release(out) }
                    t.sent += UInt64(sent)
                    t.refused += UInt64(n - sent)
                    t.noBuffer += UInt64(due - n)
                    t.offered += UInt64(due)  // what found no mbuf or no room counts as offered and lost
                }
                if receiving { t.answered += UInt64(countReplies()) }
                now = monotonicNanoseconds()
            }
        }
        t.seconds = Double(now - start) / 1e9
        guard receiving else { return t }
        var quietSince = monotonicNanoseconds()
        while monotonicNanoseconds() - quietSince < 20_000_000 {
            let n = countReplies()
            if n > 0 { t.answered += UInt64(n); quietSince = monotonicNanoseconds() }
        }
        return t
    }

    /// Receives a burst; returns how many replies it holds: UDP frames from the server's
    /// port that start a reply (memcached's sequence number 0; a long reply's later
    /// datagrams are not counted again).
    private func countReplies() -> Int {
        let n = link.port.receive(queue: 0, into: rx)
        guard n > 0 else { return 0 }
        var replies = 0
        let serverPort = link.server.1
        for i in 0..<n {
            let b = UnsafeRawBufferPointer(rx[i].bytes)
            // Ethernet, IPv4 without options, UDP from the server's port (no parse: the
            // client must stay cheaper than the server).
            guard b.count >= 50, b[12] == 0x08, b[13] == 0x00, b[14] == 0x45, b[23] == 17,
                  UInt16(b[34]) << 8 | UInt16(b[35]) == serverPort, b[44] == 0, b[45] == 0 else { continue }
            replies += 1
        }
        link.port.release(rx)
        return replies
    }

    /// The highest rate at which a trial loses at most `tolerance` of what it offered,
    /// bisected between 0 and the client's own maximum, until the interval is within
    /// `precision` of it. First comes an unpaced trial (`saturation`): the client sends
    /// whenever the ring takes frames, so if the ring refused some, the server was the
    /// limit and what it answered is its throughput at saturation. `report` sees each
    /// trial. Returns the best passing trial (nil if none passed) and the unpaced one.
    func search(seconds: Double, tolerance: Double, precision: Double = 0.02,
                report: (Trial) -> Void) -> (best: Trial?, saturation: Trial) {
        var saturation = trial(rate: 1e12, seconds: seconds)
        saturation.rate = saturation.sentRate
        report(saturation)
        let clientMaximum = saturation.sentRate
        var low = 0.0, high = clientMaximum
        var best: Trial?
        let top = trial(rate: clientMaximum * 0.98, seconds: seconds)
        report(top)
        if top.loss <= tolerance { return (top, saturation) }
        high = top.rate
        // Down to 1 % of the client's maximum: below that, no rate passes.
        while (high - low) > precision * high && high > clientMaximum * 0.01 {
            let rate = (low + high) / 2
            let t = trial(rate: rate, seconds: seconds)
            report(t)
            if t.loss <= tolerance {
                low = rate
                best = t
            } else {
                high = rate
            }
        }
        return (best, saturation)
    }
}
