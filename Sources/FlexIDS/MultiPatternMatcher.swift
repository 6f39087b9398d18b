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
        // 1. The trie, built in the transition table itself (`none`: no child yet).
        let none = UInt32.max
        var table = [UInt32](repeating: none, count: 256)
        var own: [[Int32]] = [[]]
        for (id, pattern) in patterns.enumerated() where !pattern.isEmpty {
            var s = 0
            for b in pattern {
                let cell = s * 256 + Int(Self.fold[Int(b)])
                if table[cell] == none {
                    table[cell] = UInt32(own.count)
                    own.append([])
                    table.append(contentsOf: repeatElement(none, count: 256))
                }
                s = Int(table[cell])
            }
            own[s].append(Int32(id))
        }
        let n = own.count
        stateCount = n
        // 2. Breadth-first: a missing child becomes the failure state's transition; a
        //    child's failure state is its parent's failure state's transition. Parents'
        //    failure rows are complete before their children are visited.
        var fail = [Int](repeating: 0, count: n)
        var merged = own
        var queue: [Int] = []
        queue.reserveCapacity(n)
        for c in 0..<256 {
            if table[c] == none { table[c] = 0 } else { queue.append(Int(table[c])) }
        }
        var head = 0
        while head < queue.count {
            let s = queue[head]
            head += 1
            merged[s] += merged[fail[s]]
            let row = s * 256, failRow = fail[s] * 256
            for c in 0..<256 {
                let child = table[row + c]
                if child == none {
                    table[row + c] = table[failRow + c]
                } else {
                    fail[Int(child)] = Int(table[failRow + c])
                    queue.append(Int(child))
                }
            }
        }
        // 3. Case folding: upper-case columns behave as their lower-case ones; and the
        //    flag on every transition into a state that ends a pattern.
        let hasOutput = merged.map { !$0.isEmpty }
        let upper = (0..<256).filter { Self.fold[$0] != UInt8($0) }
        let flat = UnsafeMutablePointer<UInt32>.allocate(capacity: n * 256)
        table.withUnsafeBufferPointer { t in
            for s in 0..<n {
                let row = s * 256
                for c in 0..<256 { flat[row + c] = t[row + c] }
                for c in upper { flat[row + c] = t[row + Int(Self.fold[c])] }
                for c in 0..<256 where hasOutput[Int(flat[row + c])] { flat[row + c] |= Self.outputFlag }
            }
        }
        var starts: [Int32] = [0]
        var outputList: [Int32] = []
        for s in 0..<n {
            outputList += merged[s]
            starts.append(Int32(outputList.count))
        }
        transitions = flat
        outputStart = starts
        outputs = outputList
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
