import Synchronization

/// Cycles per request, in log-linear buckets (16 per power of two, so a value is within
/// 1/16 of its bucket's floor): fixed memory, no allocation, one writer, readers at any
/// time.
public final class CycleHistogram: @unchecked Sendable {
    static let subBuckets = 16
    static let bucketCount = 64 * subBuckets
    let counts: UnsafeMutablePointer<Atomic<UInt64>>

    public init() {
        counts = .allocate(capacity: Self.bucketCount)
        for i in 0..<Self.bucketCount { (counts + i).initialize(to: Atomic(0)) }
    }

    deinit {
        counts.deinitialize(count: Self.bucketCount)
        counts.deallocate()
    }

    static func bucket(_ v: UInt64) -> Int {
        if v < UInt64(subBuckets) { return Int(v) }
        let exponent = 63 - v.leadingZeroBitCount  // >= 4
        let shift = exponent - 4
        return (exponent - 3) * subBuckets + Int((v >> UInt64(shift)) & 15)
    }

    static func floor(_ b: Int) -> UInt64 {
        if b < subBuckets { return UInt64(b) }
        let exponent = b / subBuckets + 3
        return (UInt64(16 + b % subBuckets)) << UInt64(exponent - 4)
    }

    /// Records one value (owner thread only).
    @inline(__always) public func record(_ v: UInt64) {
        let b = Self.bucket(v)
        counts[b].store(counts[b].load(ordering: .relaxed) &+ 1, ordering: .relaxed)
    }

    public var count: UInt64 { (0..<Self.bucketCount).reduce(0) { $0 + counts[$1].load(ordering: .relaxed) } }

    /// The value below which `q` of the recorded values lie (bucket floor), 0 if empty.
    public func percentile(_ q: Double) -> UInt64 {
        let total = count
        guard total > 0 else { return 0 }
        let target = UInt64((Double(total) * q).rounded(.up))
        var seen: UInt64 = 0
        for b in 0..<Self.bucketCount {
            seen += counts[b].load(ordering: .relaxed)
            if seen >= max(target, 1) { return Self.floor(b) }
        }
        return Self.floor(Self.bucketCount - 1)
    }

    public func median() -> UInt64 { percentile(0.5) }
}
