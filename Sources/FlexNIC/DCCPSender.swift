import FlexIO
import FlexWire
import Glibc

/// The sending half of one DCCP connection with TCP's flow control and no congestion
/// control (thesis 5.2): 48-bit sequence numbers from 1, a send window of fixed-size
/// payloads, cumulative acknowledgements read from an `AckBoard` register, and
/// go-back-N retransmission of what is still unacknowledged after `retransmitAfter`.
///
/// - While the window is full the sender has no room and its owner stalls: this is how
///   a receiver that withholds acks (its queue is full) slows the sender down.
/// - A peer that acknowledges nothing for `downAfter` while data is outstanding is
///   *down*, and the connection starts over in a new epoch: what was in flight is
///   counted lost (at-most-once: the peer may have crashed with it), and the next
///   payload the owner sends is the new connection's first, offered again every
///   `probeEvery` (`isRefusing` meanwhile: the owner drops and counts other payloads).
///   The first ack brings the peer back up, whether it was slow or restarted.
///
/// Sequence numbers carry the connection's epoch: `epoch << counterBits | counter`, the
/// counter from 1. The first epoch is the wall clock in eighths of a second (28 bits:
/// it wraps every 1.06 years), each start-over's a later one, so a sender process that
/// restarts begins above anything it sent before; the receiver (`DCCPReceiver`) opens
/// a connection at a counter of 1 and starts it over when a counter of 1 comes above
/// what it expects. A counter never carries: before it would, the sender waits for its
/// window to drain and moves to the next epoch (one round trip per 2^20 payloads).
/// Known limit: a restart just after the epoch wraps, or after the clock stepped back,
/// starts below what the peer expects, and that connection stays down until the peer
/// restarts too (comparisons are not circular). There is no handshake.
///
/// Threading: one thread owns a sender. Nothing on its path allocates.
public final class DCCPSender: @unchecked Sendable {
    public struct Route: Sendable {
        /// Addresses and, when `udpEncapsulated`, the UDP ports.
        public var endpoints: FrameBuilder.Endpoints
        public var dccpSourcePort: UInt16
        public var dccpDestinationPort: UInt16
        public var udpEncapsulated: Bool

        public init(endpoints: FrameBuilder.Endpoints, dccpSourcePort: UInt16, dccpDestinationPort: UInt16, udpEncapsulated: Bool) {
            self.endpoints = endpoints
            self.dccpSourcePort = dccpSourcePort
            self.dccpDestinationPort = dccpDestinationPort
            self.udpEncapsulated = udpEncapsulated
        }
    }

    public struct Settings: Sendable {
        /// Payloads in flight at most (a power of two).
        public var window = 128
        /// The least retransmission timeout (ns).
        public var retransmitAfter: UInt64 = 10_000_000
        public var maxRetransmitAfter: UInt64 = 200_000_000
        public var downAfter: UInt64 = 3_000_000_000
        public var probeEvery: UInt64 = 500_000_000
        /// The first epoch (nil: the wall clock, `DCCPSender.clockEpoch`).
        public var firstEpoch: UInt64? = nil
        public init() {}
    }

    /// Bits of a sequence number below its epoch: 2^20 payloads per epoch.
    public static let counterBits = 20
    public static let counterMask: UInt64 = 1 << UInt64(counterBits) - 1
    static let epochMask: UInt64 = 1 << UInt64(48 - counterBits) - 1

    /// The wall clock in eighths of a second, as an epoch.
    public static var clockEpoch: UInt64 {
        var t = timespec()
        clock_gettime(CLOCK_REALTIME, &t)
        return (UInt64(max(0, t.tv_sec)) &* 8 &+ UInt64(max(0, t.tv_nsec)) / 125_000_000) & epochMask
    }

    public let route: Route
    public let settings: Settings
    public let payloadLength: Int
    let acks: AckBoard
    let ackIndex: Int
    /// Copies of the payloads in flight, slot = sequence & mask, for retransmission.
    let copies: UnsafeMutableRawPointer
    let sentAt: UnsafeMutablePointer<UInt64>
    let mask: Int
    public private(set) var nextSequence: UInt64 = 1
    public private(set) var acknowledged: UInt64 = 0
    var lastProgress: UInt64 = 0
    /// RFC 6298 state (ns); `resentThrough` is the last sequence number ever sent twice
    /// (Karn: no RTT samples up to it).
    var smoothedRTT: UInt64 = 0
    var rttVariation: UInt64 = 0
    public private(set) var retransmissionTimeout: UInt64
    var resentThrough: UInt64 = 0
    /// Duplicate acks already acted on, and when the last fast retransmit went.
    var duplicatesSeen: UInt64 = 0
    var lastFastRetransmit: UInt64 = 0
    var fastRetransmitDue = false
    public private(set) var isDown = false
    public private(set) var counters = Counters()

    public struct Counters: Sendable {
        public var sent: UInt64 = 0
        public var retransmitted: UInt64 = 0
        public var fastRetransmits: UInt64 = 0
        /// Payloads refused because the peer was down.
        public var refusedWhileDown: UInt64 = 0
        public var timesDown: UInt64 = 0
        /// Payloads in flight when the peer went down and the connection started over:
        /// lost unless the peer delivered them before it fell silent.
        public var lostInFlight: UInt64 = 0
        /// Connections started over (one per time down).
        public var epochs: UInt64 = 0
        /// Times the window was full when the owner wanted to send.
        public var windowStalls: UInt64 = 0
        public init() {}
    }

    /// A sender whose acks arrive in `acks` register `ackIndex` (its DCCP source port
    /// must be `acks.port(of: ackIndex)`).
    public init(route: Route, payloadLength: Int, acks: AckBoard, ackIndex: Int, settings: Settings = Settings()) {
        precondition(settings.window >= 1 && settings.window & (settings.window - 1) == 0, "window must be a power of two")
        precondition(route.dccpSourcePort == acks.port(of: ackIndex), "the route's DCCP port must be the ack register's")
        self.route = route
        self.settings = settings
        self.payloadLength = payloadLength
        self.acks = acks
        self.ackIndex = ackIndex
        mask = settings.window - 1
        retransmissionTimeout = settings.retransmitAfter
        let epoch = (settings.firstEpoch ?? Self.clockEpoch) & Self.epochMask
        nextSequence = epoch << UInt64(Self.counterBits) | 1
        acknowledged = nextSequence &- 1
        copies = .allocate(byteCount: settings.window * payloadLength, alignment: 64)
        sentAt = .allocate(capacity: settings.window)
        sentAt.initialize(repeating: 0, count: settings.window)
    }

    deinit {
        copies.deallocate()
        sentAt.deallocate()
    }

    /// Payloads sent and not yet acknowledged.
    @inline(__always) public var inFlight: Int { Int(nextSequence &- 1 &- acknowledged) }
    /// Whether a payload may be sent now (call `refresh` first): the window has room,
    /// and the epoch's counter is not spent (then the window drains first).
    @inline(__always) public var hasRoom: Bool { inFlight < settings.window && nextSequence & Self.counterMask != 0 }
    /// Whether the owner must drop (and count) payloads: the peer is down and the new
    /// connection's first payload is already in flight, probing for it.
    @inline(__always) public var isRefusing: Bool { isDown && inFlight > 0 }
    /// The epoch of the connection in use.
    public var epoch: UInt64 { (acknowledged &+ 1) >> UInt64(Self.counterBits) }

    /// Takes in the newest cumulative ack and notices a peer going down.
    @inline(__always)
    public func refresh(now: UInt64) {
        let a = acks.acknowledged(ackIndex)
        if a > acknowledged && a < nextSequence {
            if a > resentThrough { sampleRTT(Self.elapsed(since: sentAt[Int(truncatingIfNeeded: a) & mask], now)) }
            acknowledged = a
            lastProgress = now
            isDown = false
        } else if !isDown && inFlight > 0 && Self.elapsed(since: lastProgress, now) > settings.downAfter {
            isDown = true
            counters.timesDown &+= 1
            startOver()
        }
        if nextSequence & Self.counterMask == 0 && inFlight == 0 {
            // The epoch's counter is spent and everything is acknowledged: the next
            // epoch starts cleanly (nothing lost, nothing skipped).
            nextSequence &+= 1
            acknowledged = nextSequence &- 1
            resentThrough = acknowledged
        }
        let duplicates = acks.duplicateAcks(ackIndex)
        if duplicates &- duplicatesSeen >= 3 {
            duplicatesSeen = duplicates
            if inFlight > 0 && Self.elapsed(since: lastFastRetransmit, now) > smoothedRTT { fastRetransmitDue = true }
        }
    }

    /// Starts the connection over in a later epoch, counting what was in flight as lost.
    func startOver() {
        counters.lostInFlight &+= UInt64(inFlight)
        counters.epochs &+= 1
        let next = max(Self.clockEpoch, ((nextSequence &- 1) >> UInt64(Self.counterBits) &+ 1) & Self.epochMask)
        nextSequence = next << UInt64(Self.counterBits) | 1
        acknowledged = nextSequence &- 1
        resentThrough = acknowledged
        fastRetransmitDue = false
    }

    func sampleRTT(_ rtt: UInt64) {
        if smoothedRTT == 0 {
            smoothedRTT = rtt
            rttVariation = rtt / 2
        } else {
            let deviation = smoothedRTT > rtt ? smoothedRTT - rtt : rtt - smoothedRTT
            rttVariation = (3 * rttVariation + deviation) / 4
            smoothedRTT = (7 * smoothedRTT + rtt) / 8
        }
        retransmissionTimeout = min(max(smoothedRTT + 4 * rttVariation, settings.retransmitAfter), settings.maxRetransmitAfter)
    }

    /// Counts a payload the owner could not send: the window was full.
    @inline(__always) public func countStall() { counters.windowStalls &+= 1 }
    /// Counts a payload the owner dropped because the peer is down.
    @inline(__always) public func countRefused() { counters.refusedWhileDown &+= 1 }

    /// Frames `payload` (`payloadLength` bytes) as the next Data packet into `packet`'s
    /// buffer and keeps a copy for retransmission. Requires `hasRoom`.
    @inline(__always)
    public func send(_ payload: UnsafeRawPointer, into packet: inout Packet, now: UInt64) {
        precondition(hasRoom, "DCCPSender.send without room in the window")
        let sequence = nextSequence
        let slot = Int(truncatingIfNeeded: sequence) & mask
        (copies + slot &* payloadLength).copyMemory(from: payload, byteCount: payloadLength)
        if inFlight == 0 { lastProgress = now }
        sentAt[slot] = now
        nextSequence = sequence &+ 1
        write(sequence, slot: slot, into: &packet)
        counters.sent &+= 1
    }

    /// If the oldest payload in flight has waited the retransmission timeout (or
    /// `probeEvery` while the peer is down), sends the window again from it (go-back-N:
    /// the receiver delivers only in order) as far as `batch` has room, taking buffers
    /// from `port`, and doubles the timeout. Returns how many frames it added.
    public func retransmit(now: UInt64, port: some PacketPort, into batch: PacketBatch) -> Int {
        let outstanding = inFlight
        guard outstanding > 0 else { return 0 }
        let first = acknowledged &+ 1
        let wait = isDown ? settings.probeEvery : retransmissionTimeout
        let fast = fastRetransmitDue && !isDown
        fastRetransmitDue = false
        guard fast || Self.elapsed(since: sentAt[Int(truncatingIfNeeded: first) & mask], now) > wait else { return 0 }
        let start = batch.count
        let n = port.allocate(count: min(outstanding, batch.freeSpace), into: batch)
        for k in 0..<n {
            let sequence = first &+ UInt64(k)
            let slot = Int(truncatingIfNeeded: sequence) & mask
            sentAt[slot] = now
            write(sequence, slot: slot, into: &batch.packets[start &+ k])
        }
        counters.retransmitted &+= UInt64(n)
        resentThrough = max(resentThrough, first &+ UInt64(n) &- 1)
        if fast {
            counters.fastRetransmits &+= 1
            lastFastRetransmit = now
        } else {
            retransmissionTimeout = min(retransmissionTimeout &* 2, settings.maxRetransmitAfter)
        }
        return n
    }

    /// Time from `then` to `now`; zero if the caller's `now` is older than `then` (a
    /// timestamp the owner took before this sender last looked at the clock).
    @inline(__always) static func elapsed(since then: UInt64, _ now: UInt64) -> UInt64 { now > then ? now &- then : 0 }

    @inline(__always)
    func write(_ sequence: UInt64, slot: Int, into packet: inout Packet) {
        let buffer = UnsafeMutableRawBufferPointer(start: packet.data, count: Int(packet.capacity))
        // A port buffer always holds a 64-byte payload's frame; a failure here is a bug.
        let length = try! FrameBuilder.dccpData(
            into: buffer, endpoints: route.endpoints, udpEncapsulated: route.udpEncapsulated,
            dccpPorts: (route.dccpSourcePort, route.dccpDestinationPort), sequence: sequence,
            payload: copies + slot &* payloadLength, count: payloadLength)
        packet.length = UInt32(length)
    }
}
