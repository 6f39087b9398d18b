/// Aho-Corasick over many byte patterns, compiled to a full DFA in flat arrays (Snort's
/// `ac-full` layout): 256 next-state entries per state, so scanning is one load per
/// payload byte. Matching is case-insensitive (ASCII letters fold to lower case), as in
/// Snort's fast-pattern matcher; rules confirm case afterwards.
///
/// Invariants: state 0 is the root; `transitions[s * 256 + b]` is the next state of `s`
/// on (folded) byte `b`, with `Self.outputFlag` set when that state ends a pattern;
/// `outputs[outputStart[s] ..< outputStart[s + 1]]` are the pattern ids ending in `s`
/// (its own and those of its suffix states). Immutable after `init`, so threads share it.
public final class MultiPatternMatcher: @unchecked Sendable {
    static let outputFlag: UInt32 = 1 << 31
    let transitions: UnsafeMutablePointer<UInt32>
    let outputStart: [Int32]
    let outputs: [Int32]
    public let stateCount: Int
    public let patternCount: Int

    /// Case folding applied to both patterns and input.
    static let fold: [UInt8] = (0...255).map { b in
        b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") ? UInt8(b + 32) : UInt8(b)
    }

    /// Compiles `patterns` (pattern id = index; empty patterns never match).
    public init(patterns: [[UInt8]]) {
        patternCount = patterns.count
        // 1. The trie, with sparse children while building.
        var children: [[UInt8: Int32]] = [[:]]
        var own: [[Int32]] = [[]]
        for (id, pattern) in patterns.enumerated() where !pattern.isEmpty {
            var s = 0
            for b in pattern {
                let c = Self.fold[Int(b)]
                if let next = children[s][c] { s = Int(next); continue }
                children.append([:])
                own.append([])
                children[s][c] = Int32(children.count - 1)
                s = children.count - 1
            }
            own[s].append(Int32(id))
        }
        let n = children.count
        stateCount = n
        // 2. Breadth-first: failure links, merged outputs and the full transition table.
        let table = UnsafeMutablePointer<UInt32>.allocate(capacity: n * 256)
        table.initialize(repeating: 0, count: n * 256)
        var fail = [Int](repeating: 0, count: n)
        var merged = own
        var order: [Int] = []
        order.reserveCapacity(n)
        for (c, child) in children[0] {
            table[Int(c)] = UInt32(child)
            order.append(Int(child))
        }
        var head = 0
        while head < order.count {
            let s = order[head]
            head += 1
            merged[s] += merged[fail[s]]
            for c in 0..<256 where children[s][UInt8(c)] == nil {
                table[s * 256 + c] = table[fail[s] * 256 + c]
            }
            for (c, child) in children[s] {
                fail[Int(child)] = Int(table[fail[s] * 256 + Int(c)] & ~Self.outputFlag)
                table[s * 256 + Int(c)] = UInt32(child)
                order.append(Int(child))
            }
        }
        // Copy fold: uppercase columns behave as their lowercase ones.
        for s in 0..<n {
            for c in 0..<256 where Self.fold[c] != UInt8(c) {
                table[s * 256 + c] = table[s * 256 + Int(Self.fold[c])]
            }
        }
        var starts: [Int32] = [0]
        var flat: [Int32] = []
        for s in 0..<n {
            flat += merged[s]
            starts.append(Int32(flat.count))
        }
        for i in 0..<(n * 256) where !merged[Int(table[i] & ~Self.outputFlag)].isEmpty {
            table[i] |= Self.outputFlag
        }
        transitions = table
        outputStart = starts
        outputs = flat
    }

    deinit { transitions.deallocate() }

    /// Bytes the automaton occupies: what a core must cache to scan with it.
    public var memoryFootprint: Int { stateCount * 256 * 4 + outputStart.count * 4 + outputs.count * 4 }

    /// Scans `bytes`, calling `found` with each pattern id at each position where it
    /// ends (ids may repeat across positions).
    @inline(__always)
    public func scan(_ bytes: UnsafeRawBufferPointer, _ found: (Int32) -> Void) {
        guard let base = bytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
        var s: UInt32 = 0
        outputs.withUnsafeBufferPointer { out in
            outputStart.withUnsafeBufferPointer { starts in
                for i in 0..<bytes.count {
                    s = transitions[Int(s & ~Self.outputFlag) &<< 8 | Int(base[i])]
                    if s & Self.outputFlag != 0 {
                        let state = Int(s & ~Self.outputFlag)
                        for k in Int(starts[state])..<Int(starts[state &+ 1]) { found(out[k]) }
                    }
                }
            }
        }
    }
}
