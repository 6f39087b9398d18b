/// Per-flow registers, the pipeline's state (thesis 3.2's building blocks: the next
/// sequence number a connection must deliver, the last one acknowledged): a fixed
/// table keyed by a flow's source address and source port, each row holding the few
/// integers the program declared (`SteeringProgram.FlowRegisterSpec`).
///
/// Invariants: at most `capacity` flows are open (open addressing over a power-of-two
/// table at most half full, so a lookup ends and never allocates); a row, once opened,
/// keeps its flow for the table's life; registers change only through the program's
/// actions (`lookupFlow`, `setRegister`) and the placement element, all on the one
/// thread that runs the pipeline.
public final class FlowRegisters {
    /// Registers per flow (1...4).
    public let registers: Int
    public let capacity: Int
    let initial: [UInt64]
    let keys: UnsafeMutablePointer<UInt64>
    let values: UnsafeMutablePointer<UInt64>
    let mask: Int
    /// The hash's top bits pick the first slot: as many as the table has rows.
    let shift: UInt64
    public private(set) var open = 0
    /// Rows of the table (more than `capacity`: it is kept at most half full).
    public var rows: Int { mask + 1 }

    init(_ spec: SteeringProgram.FlowRegisterSpec) {
        registers = spec.initial.count
        capacity = spec.capacity
        initial = spec.initial
        var n = 8
        while n < spec.capacity * 2 { n <<= 1 }
        mask = n - 1
        shift = UInt64(64 - n.trailingZeroBitCount)
        keys = .allocate(capacity: n)
        keys.initialize(repeating: 0, count: n)
        values = .allocate(capacity: n * registers)
        values.initialize(repeating: 0, count: n * registers)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    /// What a lookup found (the values `MatchField.flowState` reads).
    public enum State: UInt8 {
        /// The flow's row (found, or opened now).
        case found = 1
        /// An unknown flow the program did not let open.
        case notOpen = 2
        /// An unknown flow and no room: `capacity` flows are open.
        case full = 3
    }

    /// The row of the flow (`address`, `port`), opening it with the initial registers
    /// if it is unknown and `opening`; -1 and why not otherwise.
    @inline(__always)
    func lookup(address: UInt32, port: UInt16, opening: Bool) -> (row: Int, state: State) {
        let key = 1 << 63 | UInt64(address) << 16 | UInt64(port)
        var i = Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) & mask
        while true {
            if keys[i] == key { return (i, .found) }
            if keys[i] == 0 {
                guard opening else { return (-1, .notOpen) }
                guard open < capacity else { return (-1, .full) }
                keys[i] = key
                for r in 0..<registers { values[i &* registers &+ r] = initial[r] }
                open &+= 1
                return (i, .found)
            }
            i = (i &+ 1) & mask
        }
    }

    /// Register `r` of row `row`.
    @inline(__always)
    public subscript(row: Int, r: Int) -> UInt64 {
        get { values[row &* registers &+ r] }
        set { values[row &* registers &+ r] = newValue }
    }
}
