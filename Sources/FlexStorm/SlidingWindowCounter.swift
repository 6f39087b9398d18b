/// Per-user counts over a sliding window of `slots` slots (storm-starter's
/// SlidingWindowCounter): increments go to the current slot; `advance` drops the oldest
/// slot from every total and starts a new one. Users whose total changed since the last
/// `takeChanged` are remembered, so a counter emits only what moved.
///
/// Users are interned into arrays on first sight; after that an increment allocates
/// nothing.
struct SlidingWindowCounter {
    let slots: Int
    var current = 0
    var index: [UserName: Int32] = [:]
    var users: [UserName] = []
    var totals: [UInt64] = []
    /// `slotCounts[user * slots + slot]`.
    var slotCounts: [UInt32] = []
    var changed: [Bool] = []
    var changedList: [Int32] = []

    init(slots: Int) {
        precondition(slots >= 1)
        self.slots = slots
    }

    mutating func increment(_ user: UserName) {
        let u: Int
        if let i = index[user] {
            u = Int(i)
        } else {
            u = users.count
            index[user] = Int32(u)
            users.append(user)
            totals.append(0)
            slotCounts.append(contentsOf: repeatElement(0, count: slots))
            changed.append(false)
        }
        slotCounts[u * slots + current] &+= 1
        totals[u] &+= 1
        mark(u)
    }

    /// Moves the window on by one slot: the oldest slot's counts leave the totals.
    mutating func advance() {
        current = (current + 1) % slots
        for u in 0..<users.count {
            let old = slotCounts[u * slots + current]
            guard old > 0 else { continue }
            totals[u] -= UInt64(old)
            slotCounts[u * slots + current] = 0
            mark(u)
        }
    }

    @inline(__always)
    mutating func mark(_ u: Int) {
        if !changed[u] {
            changed[u] = true
            changedList.append(Int32(u))
        }
    }

    /// Calls `body` with each user whose total changed since the last call.
    mutating func takeChanged(_ body: (UserName, UInt64) -> Void) {
        for u in changedList {
            changed[Int(u)] = false
            body(users[Int(u)], totals[Int(u)])
        }
        changedList.removeAll(keepingCapacity: true)
    }

    func total(of user: UserName) -> UInt64 { index[user].map { totals[Int($0)] } ?? 0 }
}
