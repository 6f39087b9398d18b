/// Which rules list an address: the included ranges of many rules' address sets (IP
/// reputation lists mostly: hundreds of rules, each naming hundreds of addresses) cut
/// into disjoint intervals, each with the rules whose set covers it. One binary search
/// per packet finds exactly the rules whose list includes the address, however many
/// rules there are; their exclusions are left to confirmation.
///
/// Invariants: `starts` is strictly increasing; interval `i` is
/// `starts[i] ..< starts[i + 1]` (the last runs to the end of the address space), and
/// its rules are `rules[ruleStart[i] ..< ruleStart[i + 1]]`, each once. Immutable.
struct AddressIndex: Sendable {
    private var starts: [UInt128] = []
    private var ruleStart: [Int32] = [0]
    private var rules: [Int32] = []

    var isEmpty: Bool { rules.isEmpty }

    /// Indexes `sets[k]`'s included ranges for rule `ids[k]`.
    init(_ ids: [Int32], _ sets: [AddressSet]) {
        // A sweep over the ranges' ends: +rule where a range starts, -rule past its end.
        // (An end at the top of the address space has no event past it.)
        var events: [(at: UInt128, rule: Int32, enters: Bool)] = []
        for (id, set) in zip(ids, sets) {
            for r in set.included {
                events.append((r.lowerBound, id, true))
                if r.upperBound < .max { events.append((r.upperBound + 1, id, false)) }
            }
        }
        events.sort { $0.at < $1.at }
        var active: [Int32: Int] = [:]
        var i = 0
        while i < events.count {
            let at = events[i].at
            while i < events.count && events[i].at == at {
                let e = events[i]
                active[e.rule, default: 0] += e.enters ? 1 : -1
                if active[e.rule] == 0 { active[e.rule] = nil }
                i += 1
            }
            starts.append(at)
            rules += active.keys.sorted()
            ruleStart.append(Int32(rules.count))
        }
    }

    /// Calls `body` with each rule whose included ranges contain `address`.
    @inline(__always)
    func forEachRule(containing address: UInt128, _ body: (Int32) -> Void) {
        guard !starts.isEmpty else { return }
        starts.withUnsafeBufferPointer { s in
            // The last interval starting at or before `address`.
            var lo = 0, hi = s.count
            while lo < hi {
                let mid = (lo &+ hi) >> 1
                if s[mid] <= address { lo = mid &+ 1 } else { hi = mid }
            }
            guard lo > 0 else { return }
            for k in Int(ruleStart[lo - 1])..<Int(ruleStart[lo]) { body(rules[k]) }
        }
    }

    /// Bytes of the index.
    var memoryFootprint: Int { starts.count * 16 + ruleStart.count * 4 + rules.count * 4 }
}
