import FlexWire

/// A `SteeringProgram` flattened into plain records in unsafe buffers, so that running
/// it touches no reference counts and no enum payload arrays. Read-only once built;
/// shared by every pipeline instance that runs the program.
final class CompiledProgram: @unchecked Sendable {
    struct Stage {
        var fieldStart: Int32, fieldCount: Int32
        var payloadStart: Int32, payloadCount: Int32
        var actionStart: Int32, actionCount: Int32
        /// A payload byte the stage needs (`payload[guardOffset] & guardMask ==
        /// guardValue`; `setGuard` says which one), -1: none. It is implied by the
        /// stage's matches, so a packet failing it skips the stage at the cost of one
        /// load (a binary request passes the text stages so, a text one the binary
        /// stages).
        var guardOffset: Int32 = -1
        var guardMask: UInt8 = 0, guardValue: UInt8 = 0
    }

    /// Field sources: header fields by number, a payload word, or metadata.
    enum Source: UInt8 {
        case etherType, vlanID, ipProtocol, sourceAddress, destinationAddress
        case sourcePort, destinationPort, tcpFlags, payloadLength, payloadWord
        case dccpType, dccpExtended, dccpSourcePort, dccpDestinationPort, dccpSequence
        case flowState, flowRegister, comparison, placement

        /// Whether reading it needs the frame's DCCP header.
        var isDCCP: Bool { self.rawValue >= Source.dccpType.rawValue && self.rawValue <= Source.dccpSequence.rawValue }
        /// Whether it is metadata the stateful actions write.
        var isMetadata: Bool { self.rawValue >= Source.flowState.rawValue }
    }

    struct Field {
        var source: Source
        var width: UInt8       // payload word width in bytes
        var offset: Int32      // payload word offset; register number; comparison slot
        var lo: UInt64         // exact/range low; masked value
        var hi: UInt64         // range high; mask
        var isRange: Bool      // else masked compare (exact is mask all-ones)
        var negated = false
    }

    struct Payload {
        var offset: Int32, length: Int32, pool: Int32  // pattern at pool, mask at pool+length
    }

    enum Op: UInt8 {
        case drop, toQueue, hashFourTuple, hashSymmetric, hashAddresses, hashPayload, hashToken
        case hashField  // a = offset, b = lengthAt, c = skipAt (-1: none)
        case redirect, spread, writeHash, strip, appendToLog, slowPath
        case reply  // a = first edit, b = edit count
        case replyFromTable  // a = key offset, b = max key length, c = kept prefix
        case lookupFlow  // a = condition (index in `fields`, -1: none)
        case compare  // a = field (index in `fields`), b = register, c = slot
        case setRegister  // a = field (index in `fields`), b = register, c = index of the addend in `constants`
        case recordAck
        case place  // a = target offset
    }

    struct Instruction {
        var op: Op
        var a: Int32
        var b: Int32
        var c: Int32 = -1
    }

    enum EditOp: UInt8 { case swapEthernet, swapIPv4, swapPorts, set, dccpAck, dccpAckToSender, truncate }
    struct Edit {
        var op: EditOp
        var field: Source
        var value: UInt64
    }

    let stages: UnsafeMutableBufferPointer<Stage>
    let fields: UnsafeMutableBufferPointer<Field>
    let payloads: UnsafeMutableBufferPointer<Payload>
    let pool: UnsafeMutableBufferPointer<UInt8>
    let instructions: UnsafeMutableBufferPointer<Instruction>
    let edits: UnsafeMutableBufferPointer<Edit>
    /// Fields actions read (`lookupFlow` conditions, `compare`, `setRegister`), apart
    /// from the stages' matches.
    let operands: UnsafeMutableBufferPointer<Field>
    let constants: UnsafeMutableBufferPointer<UInt64>
    /// Whether any match or action reads the DCCP header (the pipeline reads it once
    /// per packet only then).
    let readsDCCP: Bool
    /// Whether the program reads DCCP headers or keeps state: it runs the pipeline's
    /// stateful specialization.
    let keepsState: Bool
    /// Whether a stage matches IPv6 frames (`ether_type = 0x86DD`): only then does the
    /// pipeline parse IPv6, so IPv4-only programs see IPv6 frames at L2 as they always did.
    let parsesIPv6: Bool

    init(_ program: SteeringProgram) throws {
        try program.validate()
        var st: [Stage] = [], fs: [Field] = [], ps: [Payload] = [], bytes: [UInt8] = []
        var ins: [Instruction] = [], es: [Edit] = [], ops: [Field] = [], ks: [UInt64] = []
        var dccp = program.dccpInUDP, metadata = false
        func operand(_ f: MatchField) -> Int32 {
            let (src, width, offset) = Self.source(f)
            if src.isDCCP { dccp = true }
            ops.append(Field(source: src, width: width, offset: offset, lo: 0, hi: ~0, isRange: false))
            return Int32(ops.count - 1)
        }
        for (i, s) in program.stages.enumerated() {
            var stage = Stage(fieldStart: Int32(fs.count), fieldCount: 0, payloadStart: Int32(ps.count),
                              payloadCount: Int32(s.payload.count), actionStart: Int32(ins.count),
                              actionCount: Int32(s.actions.count))
            var fieldCount: Int32 = 0
            for f in s.fields {
                if Self.source(f.field).0.isDCCP { dccp = true }
                if Self.source(f.field).0.isMetadata { metadata = true }
                guard let field = Self.compile(f) else { continue }  // wildcard: nothing to test
                fs.append(field)
                fieldCount += 1
            }
            Self.setGuard(&stage, payload: s.payload, fields: fs[Int(stage.fieldStart)...])
            for p in s.payload {
                ps.append(Payload(offset: Int32(p.offset), length: Int32(p.bytes.count), pool: Int32(bytes.count)))
                bytes += p.bytes
                bytes += p.mask
            }
            var queueChosen = false
            for a in s.actions {
                switch a {
                case .drop: ins.append(Instruction(op: .drop, a: 0, b: 0))
                case .toQueue(let q): ins.append(Instruction(op: .toQueue, a: Int32(q), b: 0)); queueChosen = true
                case .hash(.fourTuple): ins.append(Instruction(op: .hashFourTuple, a: 0, b: 0))
                case .hash(.symmetricFourTuple): ins.append(Instruction(op: .hashSymmetric, a: 0, b: 0))
                case .hash(.addresses): ins.append(Instruction(op: .hashAddresses, a: 0, b: 0))
                case .hash(.payload(let o, let l)): ins.append(Instruction(op: .hashPayload, a: Int32(o), b: Int32(l ?? -1)))
                case .hash(.payloadToken(let o, let m)): ins.append(Instruction(op: .hashToken, a: Int32(o), b: Int32(m)))
                case .hash(.payloadField(let o, let l, let k)):
                    ins.append(Instruction(op: .hashField, a: Int32(o), b: Int32(l), c: Int32(k ?? -1)))
                case .redirect: ins.append(Instruction(op: .redirect, a: 0, b: 0)); queueChosen = true
                case .spread(let queues):
                    // The queue set as a 64-bit mask, low half in a, high half in b.
                    let mask = queues.reduce(UInt64(0)) { $0 | 1 << UInt64($1) }
                    ins.append(Instruction(op: .spread, a: Int32(bitPattern: UInt32(truncatingIfNeeded: mask)),
                                           b: Int32(bitPattern: UInt32(truncatingIfNeeded: mask >> 32))))
                    queueChosen = true
                case .writeHash: ins.append(Instruction(op: .writeHash, a: 0, b: 0))
                case .strip(let l): ins.append(Instruction(op: .strip, a: l == .l2 ? 2 : l == .l3 ? 3 : 4, b: 0))
                case .appendToLog(let o, let l):
                    guard queueChosen else {
                        throw ProgramError("\(program.name): stage \(i + 1) (\(s.name)): append-to-log needs a queue chosen first in the same stage")
                    }
                    ins.append(Instruction(op: .appendToLog, a: Int32(o), b: Int32(l ?? -1)))
                case .slowPath: ins.append(Instruction(op: .slowPath, a: 0, b: 0))
                case .replyFromTable(let o, let m, let k):
                    ins.append(Instruction(op: .replyFromTable, a: Int32(o), b: Int32(m), c: Int32(k)))
                case .reply(let list):
                    ins.append(Instruction(op: .reply, a: Int32(es.count), b: Int32(list.count)))
                    for e in list {
                        if case .dccpAckToSender = e { dccp = true }
                        es.append(Self.compile(e))
                    }
                case .lookupFlow(let condition):
                    var index: Int32 = -1
                    if let condition {
                        if Self.source(condition.field).0.isDCCP { dccp = true }
                        // A wildcard condition always holds: an all-zero mask.
                        ops.append(Self.compile(condition) ?? Field(source: .etherType, width: 0, offset: 0, lo: 0, hi: 0, isRange: false))
                        index = Int32(ops.count - 1)
                    }
                    ins.append(Instruction(op: .lookupFlow, a: index, b: 0))
                case .compare(let f, let r, let slot):
                    ins.append(Instruction(op: .compare, a: operand(f), b: Int32(r), c: Int32(slot)))
                case .setRegister(let r, let f, let plus):
                    ks.append(plus)
                    ins.append(Instruction(op: .setRegister, a: operand(f), b: Int32(r), c: Int32(ks.count - 1)))
                case .recordAck:
                    dccp = true
                    ins.append(Instruction(op: .recordAck, a: 0, b: 0))
                case .place(let o):
                    dccp = true
                    ins.append(Instruction(op: .place, a: Int32(o), b: 0))
                }
            }
            var s2 = stage
            s2.fieldCount = fieldCount
            st.append(s2)
        }
        stages = Self.buffer(st)
        fields = Self.buffer(fs)
        payloads = Self.buffer(ps)
        pool = Self.buffer(bytes)
        instructions = Self.buffer(ins)
        edits = Self.buffer(es)
        operands = Self.buffer(ops)
        constants = Self.buffer(ks)
        readsDCCP = dccp
        parsesIPv6 = program.stages.contains { $0.fields.contains { $0 == FieldMatch(.etherType, .exact(0x86DD)) } }
        keepsState = dccp || metadata || program.flowRegisters != nil
    }

    deinit {
        stages.deallocate(); fields.deallocate(); payloads.deallocate()
        pool.deallocate(); instructions.deallocate(); edits.deallocate()
        operands.deallocate(); constants.deallocate()
    }

    static func buffer<T>(_ a: [T]) -> UnsafeMutableBufferPointer<T> {
        let b = UnsafeMutableBufferPointer<T>.allocate(capacity: max(a.count, 1))
        _ = b.initialize(from: a)
        return UnsafeMutableBufferPointer(rebasing: b[0..<a.count])
    }

    /// Gives `stage` a guard byte its matches imply: the first byte of a payload
    /// pattern, or the first byte of a payload word compared exactly or under a mask
    /// (not a range, not negated). Of those, the last one with a nonzero value: zero
    /// bytes are common in binary headers, and later fields (an opcode, an extras
    /// length) tell requests apart where earlier ones (a magic byte, a sequence number)
    /// do not.
    static func setGuard(_ stage: inout Stage, payload: [PayloadMatch], fields: ArraySlice<Field>) {
        var candidates: [(offset: Int32, mask: UInt8, value: UInt8)] = []
        for p in payload {
            if let mask = p.mask.first, mask != 0 { candidates.append((Int32(p.offset), mask, p.bytes[0] & mask)) }
        }
        for f in fields where f.source == .payloadWord && !f.isRange && !f.negated && f.width >= 1 && f.width <= 8 {
            let shift = UInt64(8 * (Int(f.width) - 1))  // the word's first byte is its most significant
            let mask = UInt8(truncatingIfNeeded: f.hi >> shift)
            if mask != 0 { candidates.append((f.offset, mask, UInt8(truncatingIfNeeded: f.lo >> shift) & mask)) }
        }
        guard let chosen = candidates.last(where: { $0.value != 0 }) ?? candidates.first else { return }
        stage.guardOffset = chosen.offset
        stage.guardMask = chosen.mask
        stage.guardValue = chosen.value
    }

    static func source(_ f: MatchField) -> (Source, UInt8, Int32) {
        switch f {
        case .etherType: return (.etherType, 0, 0)
        case .vlanID: return (.vlanID, 0, 0)
        case .ipProtocol: return (.ipProtocol, 0, 0)
        case .sourceAddress: return (.sourceAddress, 0, 0)
        case .destinationAddress: return (.destinationAddress, 0, 0)
        case .sourcePort: return (.sourcePort, 0, 0)
        case .destinationPort: return (.destinationPort, 0, 0)
        case .tcpFlags: return (.tcpFlags, 0, 0)
        case .payloadLength: return (.payloadLength, 0, 0)
        case .payloadWord(let o, let w): return (.payloadWord, UInt8(w), Int32(o))
        case .dccpType: return (.dccpType, 0, 0)
        case .dccpExtended: return (.dccpExtended, 0, 0)
        case .dccpSourcePort: return (.dccpSourcePort, 0, 0)
        case .dccpDestinationPort: return (.dccpDestinationPort, 0, 0)
        case .dccpSequence: return (.dccpSequence, 0, 0)
        case .flowState: return (.flowState, 0, 0)
        case .flowRegister(let r): return (.flowRegister, 0, Int32(r))
        case .comparison(let slot): return (.comparison, 0, Int32(slot))
        case .placement: return (.placement, 0, 0)
        }
    }

    static func compile(_ m: FieldMatch) -> Field? {
        let (src, width, offset) = source(m.field)
        let bits = m.field.bitWidth
        let all: UInt64 = bits >= 64 ? ~0 : (1 << UInt64(bits)) - 1
        let n = m.negated
        switch m.pattern {
        case .any:
            // Nothing to test, unless negated (never matches) or the field may be absent.
            if n { return Field(source: src, width: width, offset: offset, lo: 1, hi: 0, isRange: true) }
            return nil
        case .exact(let v): return Field(source: src, width: width, offset: offset, lo: v & all, hi: all, isRange: false, negated: n)
        case .range(let lo, let hi): return Field(source: src, width: width, offset: offset, lo: lo, hi: hi, isRange: true, negated: n)
        case .masked(let v, let mask): return Field(source: src, width: width, offset: offset, lo: v & mask, hi: mask, isRange: false, negated: n)
        case .prefix(let v, let bitsKept):
            let mask: UInt64 = bitsKept == 0 ? 0 : (all >> UInt64(bits - bitsKept)) << UInt64(bits - bitsKept)
            return Field(source: src, width: width, offset: offset, lo: v & mask, hi: mask, isRange: false, negated: n)
        }
    }

    static func compile(_ e: ReplyEdit) -> Edit {
        switch e {
        case .swapEthernet: return Edit(op: .swapEthernet, field: .etherType, value: 0)
        case .swapIPv4: return Edit(op: .swapIPv4, field: .etherType, value: 0)
        case .swapPorts: return Edit(op: .swapPorts, field: .etherType, value: 0)
        case .set(let f, let v): return Edit(op: .set, field: source(f).0, value: v)
        case .dccpAck: return Edit(op: .dccpAck, field: .etherType, value: 0)
        case .dccpAckToSender(let r): return Edit(op: .dccpAckToSender, field: .etherType, value: r.map { UInt64($0) + 1 } ?? 0)
        case .truncatePayload(let n): return Edit(op: .truncate, field: .etherType, value: UInt64(n))
        }
    }
}
