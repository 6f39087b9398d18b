/// A FlexNIC match+action program (thesis chapter 3): an ordered list of stages, each a
/// match on parsed header fields and payload bytes and a fixed list of actions.
///
/// Semantics, per packet:
/// 1. The frame is parsed once. A frame whose headers are truncated or inconsistent (or
///    whose IPv4 header checksum fails, or L4 checksum when `verifyL4Checksums`) goes to
///    the slow-path queue; no stage sees it.
/// 2. Stages are tried in order. A stage matches when all its field and payload matches
///    hold (a stage with none matches everything). Its actions then run in order.
/// 3. Actions that only annotate (`hash`, `writeHash`, `strip`) or work on state
///    (`lookupFlow`, `compare`, `setRegister`, `recordAck`, `place`) let processing go
///    on to the next stage. Once a matching stage has decided the packet's fate
///    (`drop`, `toQueue`, `redirect`, `spread`, `appendToLog`, `reply`, `slowPath`),
///    no later stage runs.
/// 4. If no stage decides, `defaultDisposition` does.
///
/// State (stateful elements): a program may declare per-flow registers
/// (`flowRegisters`). `lookupFlow` finds (or opens) the packet's flow; `compare` and
/// `setRegister` read and write its registers; `place` hands the packet to the
/// application's placement element, which enqueues it or withholds it. Their outcomes
/// are metadata (`MatchField.flowState`, `.comparison`, `.placement`, `.flowRegister`)
/// that later stages match, as they match header fields.
///
/// Work per packet is bounded: loops only over the stages and within `spread` (at most
/// 63 steps) and a flow lookup (a half-full table), payload reads limited to the frame.
public struct SteeringProgram: Sendable, Equatable {
    public var name: String
    public var stages: [Stage]
    /// Number of core queues the program steers to (queue numbers are 0..<queues).
    public var queues: Int
    /// Entries of the redirection table (`redirect`); a power of two.
    public var redirectionEntries: Int
    public var defaultDisposition: Disposition
    /// Also verify UDP/TCP/DCCP checksums (costs a pass over the payload).
    public var verifyL4Checksums: Bool
    /// RSS key for Toeplitz hashing.
    public var toeplitzKey: [UInt8]
    /// Per-flow registers, if the program keeps state.
    public var flowRegisters: FlowRegisterSpec?
    /// UDP datagrams carry DCCP (`FrameBuilder.dccpData`'s encapsulation): the DCCP
    /// fields read the header in the UDP payload, and a malformed one sends the frame
    /// to the slow path as a malformed header would.
    public var dccpInUDP: Bool

    public init(name: String, queues: Int, stages: [Stage], defaultDisposition: Disposition = .slowPath,
                redirectionEntries: Int = RedirectionTable.defaultEntries, verifyL4Checksums: Bool = false,
                toeplitzKey: [UInt8] = ToeplitzHash.microsoftKey, flowRegisters: FlowRegisterSpec? = nil,
                dccpInUDP: Bool = false) {
        self.name = name
        self.queues = queues
        self.stages = stages
        self.defaultDisposition = defaultDisposition
        self.redirectionEntries = redirectionEntries
        self.verifyL4Checksums = verifyL4Checksums
        self.toeplitzKey = toeplitzKey
        self.flowRegisters = flowRegisters
        self.dccpInUDP = dccpInUDP
    }

    /// A table of per-flow registers: flows are keyed by source address and source
    /// port (the DCCP header's port when the frame carries DCCP).
    public struct FlowRegisterSpec: Sendable, Equatable {
        /// Flows tracked: the table's memory limit. An unknown flow beyond it is
        /// refused (`flowState` full).
        public var capacity: Int
        /// A new flow's registers; their count (1...4) is the registers per flow.
        public var initial: [UInt64]
        public init(capacity: Int, initial: [UInt64]) {
            self.capacity = capacity
            self.initial = initial
        }
    }

    /// What happens to a packet no stage decided on.
    public enum Disposition: Sendable, Equatable {
        case drop
        case slowPath
        case queue(Int)
    }

    public struct Stage: Sendable, Equatable {
        public var name: String
        public var fields: [FieldMatch]
        public var payload: [PayloadMatch]
        public var actions: [Action]

        public init(_ name: String, fields: [FieldMatch] = [], payload: [PayloadMatch] = [], actions: [Action]) {
            self.name = name
            self.fields = fields
            self.payload = payload
            self.actions = actions
        }
    }
}

/// A value a stage can match on.
public enum MatchField: Sendable, Equatable {
    case etherType, vlanID, ipProtocol, sourceAddress, destinationAddress
    case sourcePort, destinationPort, tcpFlags, payloadLength
    /// `width` (1, 2, 4 or 8) payload bytes at `offset`, read big-endian. A frame whose
    /// payload is too short does not match.
    case payloadWord(offset: Int, width: Int)
    /// DCCP header fields (over IPv4, or in UDP with `dccpInUDP`); a frame without DCCP
    /// does not match, nor does `dccpSequence` on a short (X=0) header.
    case dccpType, dccpExtended, dccpSourcePort, dccpDestinationPort, dccpSequence
    /// Metadata (state): what `lookupFlow` found (`FlowRegisters.State`; 0 before a
    /// lookup), register `n` of the flow it found (no match without one), what
    /// `compare` into slot `n` (0...3) found (`Comparison`; 0 before), and what `place`
    /// did (`Placement`; 0 before).
    case flowState, flowRegister(Int), comparison(Int), placement

    /// Bits in the field, for prefix matches.
    public var bitWidth: Int {
        switch self {
        case .etherType, .vlanID, .sourcePort, .destinationPort, .payloadLength, .dccpSourcePort, .dccpDestinationPort: return 16
        case .ipProtocol, .tcpFlags, .dccpType, .dccpExtended, .flowState, .comparison, .placement: return 8
        case .sourceAddress, .destinationAddress: return 32
        case .dccpSequence: return 48
        case .flowRegister: return 64
        case .payloadWord(_, let w): return w * 8
        }
    }
}

/// What `compare` writes into its slot: how the field stands to the register.
public enum Comparison: UInt8, Sendable {
    case less = 1, equal = 2, greater = 3
}

/// How a field is compared.
public enum FieldPattern: Sendable, Equatable {
    case exact(UInt64)
    /// Inclusive bounds.
    case range(UInt64, UInt64)
    /// The top `bits` bits equal those of `value` (10.0.0.0/8 is `.prefix(0x0A000000, 8)`).
    case prefix(UInt64, bits: Int)
    /// Bits set in `mask` equal those of `value` (e.g. TCP flags).
    case masked(UInt64, mask: UInt64)
    case any
}

public struct FieldMatch: Sendable, Equatable {
    public var field: MatchField
    public var pattern: FieldPattern
    /// Matches when the pattern does not (a field the frame lacks still never matches).
    public var negated: Bool
    public init(_ field: MatchField, _ pattern: FieldPattern, negated: Bool = false) {
        self.field = field
        self.pattern = pattern
        self.negated = negated
    }
}

/// Payload bytes at an offset, compared under a mask (mask 0xFF: must equal; 0x00:
/// wildcard; 0xDF on letters: case-insensitive ASCII).
public struct PayloadMatch: Sendable, Equatable {
    public var offset: Int
    public var bytes: [UInt8]
    public var mask: [UInt8]

    public init(offset: Int, bytes: [UInt8], mask: [UInt8]? = nil) {
        precondition(mask == nil || mask!.count == bytes.count, "payload mask must be as long as the bytes")
        self.offset = offset
        self.mask = mask ?? [UInt8](repeating: 0xFF, count: bytes.count)
        self.bytes = zip(bytes, self.mask).map { $0 & $1 }
    }

    /// Exact ASCII text at `offset`.
    public init(offset: Int, text: String) { self.init(offset: offset, bytes: Array(text.utf8)) }
}

/// What a hash action hashes.
public enum HashInput: Sendable, Equatable {
    /// Toeplitz over IPv4 source, destination, source port, destination port.
    case fourTuple
    /// Toeplitz over the 4-tuple with addresses and ports each put in order, so both
    /// directions of a flow hash alike.
    case symmetricFourTuple
    /// Toeplitz over IPv4 source and destination.
    case addresses
    /// `KeyHash` over `length` payload bytes at `offset` (nil: to the end).
    case payload(offset: Int, length: Int?)
    /// `KeyHash` over the payload bytes from `offset` (after any spaces there) up to
    /// (not including) the next space, CR or LF, at most `maxLength` bytes: a text
    /// protocol's key (memcached `get <key>`). A missing token, or one longer than
    /// `maxLength`, sends the packet to the slow path.
    case payloadToken(offset: Int, maxLength: Int)
    /// `KeyHash` over a length-prefixed field, as binary protocols lay out keys: the
    /// length is the big-endian 16-bit word at `lengthAt`; the field starts at `offset`
    /// plus, if `skipAt` is given, the byte found at `skipAt` (memcached binary:
    /// extras length). A field outside the payload sends the packet to the slow path.
    case payloadField(offset: Int, lengthAt: Int, skipAt: Int?)
}

/// Which headers `strip` removes: the application's data then starts after them.
public enum StripLayer: String, Sendable, Equatable {
    case l2, l3, l4
}

/// One edit of a reply built from the received packet as a template. After the edits
/// the pipeline recomputes the IPv4 header checksum and the L4 checksum.
public enum ReplyEdit: Sendable, Equatable {
    case swapEthernet
    case swapIPv4
    case swapPorts
    /// Sets a header field: the Ethernet type, VLAN id, an IPv4 address, a port, the TCP
    /// flags or the DCCP type (with care: `dccpAck` builds a valid Ack); `validate`
    /// refuses any other.
    case set(MatchField, UInt64)
    /// Turns a DCCP Data or DataAck packet into the Ack of it (RFC 4340, thesis fig.
    /// 5.4): type Ack, acknowledgement number = the packet's sequence number, payload
    /// removed. Requires long (X=1) sequence numbers and DCCP over IPv4.
    case dccpAck
    /// The whole Ack back to the sender, in one edit: `dccpAck` with Ethernet and IPv4
    /// addresses and ports swapped (DCCP's, and UDP's when `dccpInUDP`). The
    /// acknowledgement number is the packet's sequence number, or the looked-up flow's
    /// register `register` (a duplicate ack of the last one acknowledged).
    case dccpAckToSender(register: Int?)
    /// Cuts the payload to at most `n` bytes.
    case truncatePayload(Int)
}

/// A stage action.
public enum Action: Sendable, Equatable {
    case drop
    case toQueue(Int)
    case hash(HashInput)
    /// Picks the queue from the redirection table by the last computed hash.
    case redirect
    /// Picks one of these queues (fewer than 64, each once) by the last computed hash:
    /// a class of traffic spread over a subset of the cores.
    case spread([Int])
    /// Hands the last computed hash to the core in the descriptor.
    case writeHash
    case strip(StripLayer)
    /// Copies payload bytes (`offset`, `length`; nil: to the end) into the chosen queue's
    /// log segments; the core gets a `logRecord` descriptor with the record and the frame.
    /// A queue must be chosen by an earlier action. No segment free: the frame goes to
    /// the slow path (`logUnavailable`), whole.
    case appendToLog(offset: Int, length: Int?)
    case reply([ReplyEdit])
    /// Reply offload: if the pipeline's `ReplyTable` holds a current reply for the key
    /// token at payload offset `keyOffset` (the token must end the request, followed only
    /// by CR LF; at most `maxKeyLength` bytes; hashed by an earlier `hash`), answer with
    /// the request's first `keepPrefix` payload bytes (e.g. a UDP frame header) and the
    /// stored reply, addresses and ports swapped. On a miss, the next action runs.
    case replyFromTable(keyOffset: Int, maxKeyLength: Int, keepPrefix: Int)
    case slowPath
    /// Finds the packet's flow in `flowRegisters` (`flowState`), opening it with the
    /// initial registers if it is new and `openWhen` holds (nil: always).
    case lookupFlow(openWhen: FieldMatch?)
    /// Compares `field` with the looked-up flow's register `register`; the outcome goes
    /// to metadata slot `slot` (`MatchField.comparison(slot)`). No flow: no outcome.
    case compare(MatchField, register: Int, slot: Int)
    /// Sets the looked-up flow's register `register` to `field` plus `plus`.
    case setRegister(Int, to: MatchField, plus: UInt64)
    /// Raises the `AckBoard` register of the local sender the DCCP packet's destination
    /// port names to its acknowledgement number (the stage should match the board's
    /// ports).
    case recordAck
    /// "Enqueue or withhold": hands the packet of the looked-up flow to the pipeline's
    /// placement element, which places its payload into the queue the target id at
    /// DCCP payload offset `targetAt` names, or withholds it; the outcome is
    /// `MatchField.placement`.
    case place(targetAt: Int)

    /// Whether this action decides the packet's fate.
    public var decides: Bool {
        switch self {
        case .hash, .writeHash, .strip, .replyFromTable, .lookupFlow, .compare, .setRegister, .recordAck, .place: return false
        default: return true
        }
    }

    /// Whether this action needs the flow registers.
    var usesFlow: Bool {
        switch self {
        case .lookupFlow, .compare, .setRegister, .place: return true
        case .reply(let edits): return edits.contains { if case .dccpAckToSender(.some) = $0 { return true }; return false }
        default: return false
        }
    }
}

/// A program that cannot be compiled: what is wrong and where.
public struct ProgramError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension SteeringProgram {
    /// The most stages a program may have (a stage's index must fit a byte, with room).
    public static let maximumStages = 250

    /// Checks everything that can be checked before packets flow. Errors start with
    /// `label` (default: the program's name).
    public func validate(label: String? = nil) throws {
        let name = label ?? self.name
        guard queues >= 1 else { throw ProgramError("\(name): queues must be at least 1") }
        guard redirectionEntries > 0, redirectionEntries & (redirectionEntries - 1) == 0 else {
            throw ProgramError("\(name): redirection table size \(redirectionEntries) is not a power of two")
        }
        guard stages.count <= Self.maximumStages else { throw ProgramError("\(name): more than \(Self.maximumStages) stages") }
        guard toeplitzKey.count >= 16 else { throw ProgramError("\(name): Toeplitz key shorter than 16 bytes") }
        // Hashing IPv6 addresses and ports takes 36 bytes of input: a 40-byte key.
        if toeplitzKey.count < 40 && stages.contains(where: { $0.fields.contains(FieldMatch(.etherType, .exact(0x86DD))) }) {
            throw ProgramError("\(name): a program that matches IPv6 needs a Toeplitz key of 40 bytes")
        }
        if case .queue(let q) = defaultDisposition, !(0..<queues).contains(q) {
            throw ProgramError("\(name): default queue \(q) out of range 0..<\(queues)")
        }
        if let spec = flowRegisters {
            guard (1...4).contains(spec.initial.count), spec.capacity >= 1, spec.capacity <= 1 << 24 else {
                throw ProgramError("\(name): flow registers need 1...4 registers and a capacity of 1...16777216 flows")
            }
        }
        func checkRegister(_ r: Int, _ at: String) throws {
            guard let spec = flowRegisters else { throw ProgramError("\(at): register \(r) but no flow registers") }
            guard (0..<spec.initial.count).contains(r) else {
                throw ProgramError("\(at): register \(r) out of range 0..<\(spec.initial.count)")
            }
        }
        // Fields an action reads: the packet's, or a flow register.
        func checkReadable(_ f: MatchField, _ at: String) throws {
            switch f {
            case .flowState, .comparison, .placement:
                throw ProgramError("\(at): an action cannot read \(f)")
            case .flowRegister(let r): try checkRegister(r, at)
            case .payloadWord(let o, let w) where o < 0 || ![1, 2, 4, 8].contains(w):
                throw ProgramError("\(at): payload word at \(o) of width \(w) (widths 1, 2, 4, 8)")
            default: break
            }
        }
        // Offsets and lengths inside a frame: at most 65535.
        func checkOffsets(_ values: [Int?], _ what: String, _ at: String, minimum: Int = 0) throws {
            for case let v? in values where v < minimum || v > 65_535 {
                throw ProgramError("\(at): \(what) \(v) out of range \(minimum)...65535")
            }
        }
        // A match of a stage, or an action's condition.
        func checkMatch(_ f: FieldMatch, _ at: String) throws {
            if case .flowRegister(let r) = f.field { try checkRegister(r, at) }
            if case .comparison(let slot) = f.field, !(0..<4).contains(slot) {
                throw ProgramError("\(at): comparison slot \(slot) (slots 0...3)")
            }
            if case .payloadWord(let o, let w) = f.field, o < 0 || o > 65_535 || ![1, 2, 4, 8].contains(w) {
                throw ProgramError("\(at): payload word at \(o) of width \(w) (offsets 0...65535, widths 1, 2, 4, 8)")
            }
            if case .prefix(_, let bits) = f.pattern, bits < 0 || bits > f.field.bitWidth {
                throw ProgramError("\(at): prefix length \(bits) on a \(f.field.bitWidth)-bit field")
            }
            if case .range(let lo, let hi) = f.pattern, lo > hi {
                throw ProgramError("\(at): empty range \(lo)-\(hi)")
            }
        }
        for (i, s) in stages.enumerated() {
            let at = "\(name): stage \(i + 1) (\(s.name))"
            for f in s.fields { try checkMatch(f, at) }
            for p in s.payload where p.offset < 0 || p.offset > 65_535 || p.bytes.isEmpty {
                throw ProgramError("\(at): payload match needs an offset in 0...65535 and at least one byte")
            }
            var decided = false
            for a in s.actions {
                if decided { throw ProgramError("\(at): action \(a) after the packet's fate was decided") }
                switch a {
                case .toQueue(let q) where !(0..<queues).contains(q):
                    throw ProgramError("\(at): queue \(q) out of range 0..<\(queues)")
                case .spread(let list) where list.isEmpty || Set(list).count != list.count || !list.allSatisfy({ (0..<min(queues, 64)).contains($0) }):
                    throw ProgramError("\(at): spread needs distinct queues in 0..<\(min(queues, 64))")
                case .hash(.payload(let o, let l)):
                    try checkOffsets([o], "payload hash offset", at)
                    try checkOffsets([l], "payload hash length", at, minimum: 1)
                case .hash(.payloadToken(let o, let m)):
                    try checkOffsets([o], "payload token offset", at)
                    try checkOffsets([m], "payload token length", at, minimum: 1)
                case .hash(.payloadField(let o, let l, let k)):
                    try checkOffsets([o, l, k], "payload field offset", at)
                case .appendToLog(let o, let l):
                    try checkOffsets([o], "log offset", at)
                    try checkOffsets([l], "log length", at, minimum: 1)
                case .replyFromTable(let k, let m, let p):
                    try checkOffsets([k, p], "reply-from-table offset", at)
                    try checkOffsets([m], "reply-from-table key length", at, minimum: 1)
                case .reply(let edits):
                    if let i = edits.firstIndex(where: { if case .dccpAckToSender = $0 { return true }; return false }), i != edits.count - 1 {
                        throw ProgramError("\(at): dccp-ack-to-sender rewrites the whole frame: it must be a reply's last edit")
                    }
                    for e in edits {
                        if case .truncatePayload(let n) = e { try checkOffsets([n], "truncate length", at) }
                        if case .set(let f, _) = e {
                            switch f {
                            case .etherType, .vlanID, .sourceAddress, .destinationAddress, .sourcePort, .destinationPort, .tcpFlags, .dccpType:
                                break
                            default: throw ProgramError("\(at): a reply cannot set \(f)")
                            }
                        }
                        if case .dccpAckToSender(.some(let r)) = e { try checkRegister(r, at) }
                    }
                case .compare(let f, let r, let slot):
                    try checkRegister(r, at)
                    guard (0..<4).contains(slot) else { throw ProgramError("\(at): comparison slot \(slot) (slots 0...3)") }
                    try checkReadable(f, at)
                case .setRegister(let r, let f, _):
                    try checkRegister(r, at)
                    try checkReadable(f, at)
                case .lookupFlow(let condition):
                    guard flowRegisters != nil else { throw ProgramError("\(at): lookup-flow needs flow registers") }
                    if let condition {
                        try checkReadable(condition.field, at)
                        try checkMatch(condition, at)
                    }
                case .place(let o):
                    try checkOffsets([o], "place target offset", at)
                default: break
                }
                if a.usesFlow && flowRegisters == nil { throw ProgramError("\(at): \(a) needs flow registers") }
                // appendToLog needs a queue: toQueue/redirect come first in the same stage.
                if case .appendToLog = a {
                    decided = true
                    continue
                }
                if a.decides {
                    if case .toQueue = a { continue }
                    if case .redirect = a { continue }
                    if case .spread = a { continue }
                    decided = true
                }
            }
        }
    }
}
