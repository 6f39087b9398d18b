/// One line of a ranking: a user and its count.
public struct RankEntry: Sendable, Equatable, CustomStringConvertible {
    public var user: UserName
    public var count: UInt64
    public init(user: UserName, count: UInt64) {
        self.user = user
        self.count = count
    }

    /// Ranking order: higher count first, then by name, so every ranking is total and
    /// the same on every node.
    @inline(__always)
    public static func ranksBefore(_ a: RankEntry, _ b: RankEntry) -> Bool {
        a.count != b.count ? a.count > b.count : a.user < b.user
    }

    /// The first `n` of `entries` in ranking order, by a bounded insertion (n is small).
    public static func top(_ n: Int, of entries: some Sequence<RankEntry>) -> [RankEntry] {
        var best: [RankEntry] = []
        best.reserveCapacity(n + 1)
        for e in entries where e.count > 0 {
            if best.count == n, let last = best.last, !ranksBefore(e, last) { continue }
            var i = best.count
            while i > 0 && ranksBefore(e, best[i - 1]) { i -= 1 }
            best.insert(e, at: i)
            if best.count > n { best.removeLast() }
        }
        return best
    }

    public var description: String { "\(user) \(count)" }
}
