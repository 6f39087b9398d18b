import FlexWire

/// What detection needs to know about a packet's flow: who sent it and whether the
/// session is set up (Snort's `flow:to_server|to_client,established`).
/// Used by the one instance thread that owns the flow table (the bits pointer is its).
public struct FlowVerdict: @unchecked Sendable {
    /// The packet goes from the flow's client to its server.
    public var toServer: Bool
    public var established: Bool
    /// The packet belongs to a tracked flow (false for non-TCP/UDP, or a full table).
    public var tracked: Bool
    /// The flow's flowbits (`FlowTable.flowbitWords` words), if it is tracked.
    public var flowbits: UnsafeMutablePointer<UInt64>? = nil
    /// The flow's slot in its table (-1: untracked): what per-flow state elsewhere
    /// (stream reassembly) is keyed by.
    public var slot: Int32 = -1
    /// This packet started the flow, or a new session on its 5-tuple: per-flow state
    /// kept elsewhere starts over.
    public var startsSession = false
    /// TCP: the bytes each side has sent, by sequence numbers (`stream_size`), this
    /// packet included.
    public var streamBytes: (client: UInt32, server: UInt32)? = nil
}

/// Per-instance TCP and UDP flow state, as far as `flow:` needs it; open addressing with
/// linear probing in one fixed allocation, so lookups allocate nothing.
///
/// - TCP: the sender of a SYN is the client (of a SYN-ACK, the receiver). The session is
///   established when the client's ACK completes the handshake, and ends with a RST; a
///   new SYN on an established 5-tuple starts a new session. A flow first seen
///   mid-stream (no SYN) is picked up as established, as Snort's stream5 does, with the
///   client guessed from the ports: the side on a service port (or on a port below 1024
///   facing one above) is the server.
/// - UDP: the first sender is the client unless the ports say otherwise; established
///   once both sides have sent.
///
/// Flows are never evicted (a trace replay is finite). When the table is full, new
/// flows are inspected statelessly (the mid-stream guesses) and counted in `untracked`.
public struct FlowTable: ~Copyable {
    struct Entry {
        var low: UInt128 = 0        // the lower endpoint's address (IPAddressing's form)
        var high: UInt128 = 0       // the other endpoint's
        var ports: UInt32 = 0       // low endpoint's port << 16 | high endpoint's
        var proto: UInt8 = 0        // 0: empty slot
        var isIPv6 = false          // an IPv4-mapped IPv6 address is not the IPv4 host
        var state: State = []
    }
    /// One TCP side's sequence space as stream5 tracks it for `stream_size`: the first
    /// number seen from it and the next it will send, moved forward only by a segment
    /// that ends within `window` of it (a segment far ahead is not believed).
    struct Sequence {
        var initial: UInt32 = 0
        var next: UInt32 = 0
        var seen = false

        static let window: UInt32 = 1 << 20

        mutating func advance(_ seq: UInt32, to end: UInt32) {
            if !seen {
                (initial, next, seen) = (seq, end, true)
            } else if end != next && end &- next <= Self.window {
                next = end
            }
        }

        /// Next less initial, as stream5 computes it (a wrapped pair is subtracted the
        /// other way round).
        var bytes: UInt32 { next > initial ? next - initial : initial - next }
    }
    struct State: OptionSet {
        let rawValue: UInt8
        static let clientIsLow = State(rawValue: 1)
        static let synAckSeen = State(rawValue: 2)
        static let established = State(rawValue: 4)
        static let lowSent = State(rawValue: 8)
        static let highSent = State(rawValue: 16)
    }

    let slots: UnsafeMutablePointer<Entry>
    /// Per slot, the client's and the server's TCP sequence spaces; only when a rule
    /// reads them (`stream_size`), so other rule sets pay nothing for them.
    let sequences: UnsafeMutablePointer<(client: Sequence, server: Sequence)>?
    /// Each slot's flowbits, `flowbitWords` words per slot, cleared when a flow (or a
    /// new session on its 5-tuple) starts.
    let flowbits: UnsafeMutablePointer<UInt64>
    public let flowbitWords: Int
    let mask: Int
    /// Slots in the table: `FlowVerdict.slot` is below this.
    var slotCount: Int { mask + 1 }
    public let capacity: Int
    public private(set) var count = 0
    public private(set) var untracked = 0

    /// A table for up to `capacity` flows (rounded up to a power of two; the slot array
    /// is a quarter larger than that to keep probes short).
    public init(capacity: Int, flowbits: Int = 0, tracksSequences: Bool = false) {
        var n = 16
        while n < capacity + capacity / 4 { n <<= 1 }
        slots = .allocate(capacity: n)
        slots.initialize(repeating: Entry(), count: n)
        if tracksSequences {
            sequences = .allocate(capacity: n)
            sequences!.initialize(repeating: (Sequence(), Sequence()), count: n)
        } else {
            sequences = nil
        }
        flowbitWords = (flowbits + 63) / 64
        self.flowbits = .allocate(capacity: max(1, n * flowbitWords))
        self.flowbits.initialize(repeating: 0, count: max(1, n * flowbitWords))
        mask = n - 1
        self.capacity = capacity
    }

    deinit {
        slots.deallocate()
        sequences?.deallocate()
        flowbits.deallocate()
    }

    func bits(_ slot: Int) -> UnsafeMutablePointer<UInt64>? { flowbitWords > 0 ? flowbits + slot * flowbitWords : nil }

    /// Updates the flow of `frame` and says how the packet relates to it.
    /// `senderIsServer` guesses the roles of a flow seen first mid-stream; `sequence` is
    /// a TCP segment's sequence number.
    mutating func update(_ frame: ParsedFrame, _ endpoints: PacketAddresses, sequence: UInt32 = 0, senderIsServer: Bool) -> FlowVerdict {
        let isTCP = frame.layers.contains(.tcp)
        guard isTCP || frame.layers.contains(.udp) else { return FlowVerdict(toServer: true, established: false, tracked: false) }
        let sa = endpoints.source, da = endpoints.destination
        let senderIsLow = (sa, frame.sourcePort) <= (da, frame.destinationPort)
        let (low, high) = senderIsLow ? (sa, da) : (da, sa)
        let ports = senderIsLow ? UInt32(frame.sourcePort) << 16 | UInt32(frame.destinationPort)
                                : UInt32(frame.destinationPort) << 16 | UInt32(frame.sourcePort)
        let folded = UInt64(truncatingIfNeeded: low) ^ UInt64(truncatingIfNeeded: low >> 64) &* 31
            ^ (UInt64(truncatingIfNeeded: high) ^ UInt64(truncatingIfNeeded: high >> 64) &* 31) << 1
        let isIPv6 = frame.layers.contains(.ipv6)
        var h = (folded ^ UInt64(ports) << 7 ^ UInt64(frame.ipProtocol) ^ (isIPv6 ? 0x100 : 0)) &* 0x9E37_79B9_7F4A_7C15
        h ^= h >> 29
        var i = Int(truncatingIfNeeded: h) & mask
        let syn = frame.tcpFlags & 0x02 != 0, ack = frame.tcpFlags & 0x10 != 0
        let end = sequence &+ UInt32(frame.payloadLength) &+ (syn ? 1 : 0) &+ (frame.tcpFlags & 0x01 != 0 ? 1 : 0)
        /// The segment's sequence numbers go to its sender's side; a client's SYN with
        /// another initial number starts both sides over (a new session on the 5-tuple).
        func sequenced(_ slot: Int, fromClient: Bool, _ v: FlowVerdict) -> FlowVerdict {
            guard isTCP, let s = sequences.map({ $0 + slot }) else { return v }
            if fromClient {
                if syn && !ack && s.pointee.client.seen && s.pointee.client.initial != sequence { s.pointee = (Sequence(), Sequence()) }
                s.pointee.client.advance(sequence, to: end)
            } else {
                s.pointee.server.advance(sequence, to: end)
            }
            var v = v
            v.streamBytes = (s.pointee.client.bytes, s.pointee.server.bytes)
            return v
        }
        while true {
            let e = slots + i
            if e.pointee.proto == 0 {
                // A new flow: who is the client?
                var state: State = senderIsLow ? .lowSent : .highSent
                let senderIsClient: Bool
                if isTCP && syn { senderIsClient = !ack } else { senderIsClient = !senderIsServer }
                if senderIsClient == senderIsLow { state.insert(.clientIsLow) }
                if isTCP && syn && ack { state.insert(.synAckSeen) }
                if isTCP && !syn { state.insert(.established) }  // mid-stream pickup
                guard count < capacity else {
                    untracked &+= 1
                    return FlowVerdict(toServer: senderIsClient, established: isTCP && !syn, tracked: false)
                }
                e.pointee = Entry(low: low, high: high, ports: ports, proto: frame.ipProtocol, isIPv6: isIPv6, state: state)
                count &+= 1
                return sequenced(i, fromClient: senderIsClient,
                                 FlowVerdict(toServer: senderIsClient, established: state.contains(.established), tracked: true,
                                             flowbits: bits(i), slot: Int32(i), startsSession: true))
            }
            if e.pointee.low == low && e.pointee.high == high && e.pointee.ports == ports && e.pointee.isIPv6 == isIPv6 && e.pointee.proto == frame.ipProtocol {
                var state = e.pointee.state
                if isTCP && syn && !ack && state.contains(.established) {
                    // The 5-tuple is reused by a new connection: start over, the SYN's sender
                    // as the client.
                    state = senderIsLow ? [.lowSent, .clientIsLow] : [.highSent]
                    e.pointee.state = state
                    sequences?[i] = (Sequence(), Sequence())
                    bits(i)?.update(repeating: 0, count: flowbitWords)
                    return sequenced(i, fromClient: true,
                                     FlowVerdict(toServer: true, established: false, tracked: true, flowbits: bits(i), slot: Int32(i), startsSession: true))
                }
                if isTCP && frame.tcpFlags & 0x04 != 0 {
                    // RST: the session is over; what follows is not established.
                    state.subtract([.established, .synAckSeen])
                    e.pointee.state = state
                    let toServer = state.contains(.clientIsLow) == senderIsLow
                    return sequenced(i, fromClient: toServer,
                                     FlowVerdict(toServer: toServer, established: false, tracked: true, flowbits: bits(i), slot: Int32(i)))
                }
                let toServer = state.contains(.clientIsLow) == senderIsLow
                state.insert(senderIsLow ? .lowSent : .highSent)
                if isTCP {
                    if syn && ack && !toServer { state.insert(.synAckSeen) }
                    if !syn && ack && toServer && state.contains(.synAckSeen) { state.insert(.established) }
                } else if state.contains([.lowSent, .highSent]) {
                    state.insert(.established)
                }
                e.pointee.state = state
                return sequenced(i, fromClient: toServer,
                                 FlowVerdict(toServer: toServer, established: state.contains(.established), tracked: true,
                                             flowbits: bits(i), slot: Int32(i)))
            }
            i = (i &+ 1) & mask
        }
    }
}
