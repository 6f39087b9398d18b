import Synchronization

/// Counters of one partition, written by whoever holds the partition, read by `stats`
/// from any thread (relaxed atomics, no read-modify-write on the hot path).
public final class KVStats: @unchecked Sendable {
    public enum Counter: Int, CaseIterable, Sendable {
        case cmdGet, getHits, getMisses, getExpired, getFlushed, cmdSet, cmdTouch
        case deleteHits, deleteMisses, incrHits, incrMisses, decrHits, decrMisses
        case casHits, casMisses, casBadval, touchHits, touchMisses
        case evictions, reclaimed, totalItems, currItems, bytes
        case compactions, compactedItems, secondChances

        /// memcached's name for the counter.
        public var name: String {
            switch self {
            case .cmdGet: return "cmd_get"
            case .getHits: return "get_hits"
            case .getMisses: return "get_misses"
            case .getExpired: return "get_expired"
            case .getFlushed: return "get_flushed"
            case .cmdSet: return "cmd_set"
            case .cmdTouch: return "cmd_touch"
            case .deleteHits: return "delete_hits"
            case .deleteMisses: return "delete_misses"
            case .incrHits: return "incr_hits"
            case .incrMisses: return "incr_misses"
            case .decrHits: return "decr_hits"
            case .decrMisses: return "decr_misses"
            case .casHits: return "cas_hits"
            case .casMisses: return "cas_misses"
            case .casBadval: return "cas_badval"
            case .touchHits: return "touch_hits"
            case .touchMisses: return "touch_misses"
            case .evictions: return "evictions"
            case .reclaimed: return "reclaimed"
            case .totalItems: return "total_items"
            case .currItems: return "curr_items"
            case .bytes: return "bytes"
            case .compactions: return "segments_compacted"
            case .compactedItems: return "items_compacted"
            case .secondChances: return "items_second_chance"
            }
        }
    }

    let cells: UnsafeMutablePointer<Atomic<Int64>>

    public init() {
        cells = .allocate(capacity: Counter.allCases.count)
        for i in 0..<Counter.allCases.count { (cells + i).initialize(to: Atomic(0)) }
    }

    deinit {
        cells.deinitialize(count: Counter.allCases.count)
        cells.deallocate()
    }

    @inline(__always) func add(_ c: Counter, _ n: Int64 = 1) {
        let i = c.rawValue
        cells[i].store(cells[i].load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }

    public subscript(c: Counter) -> Int64 { cells[c.rawValue].load(ordering: .relaxed) }
}
