import Synchronization

/// What a protocol handler needs besides the store: the server's identity and
/// settings for `version` and `stats`, and connection counters.
public final class KVSContext: @unchecked Sendable {
    public static let version = "1.6.18-flexkvs-0.2"

    public let store: KVStore
    public let startTime: Int64
    public var settings: [(String, String)] = []
    /// Extra `stats steering` lines, filled by the server that runs the pipelines.
    public var steeringStats: () -> [(String, String)] = { [] }
    public let currentConnections = Atomic<Int>(0)
    public let totalConnections = Atomic<Int>(0)
    public let protocolErrors = Atomic<Int>(0)
    public let threads: Int
    let verbosity = Atomic<Int>(0)
    /// Counter values at the last `stats reset` (reported values are relative to them;
    /// gauges such as curr_items and bytes are never reset).
    let baseline = Mutex<[KVStats.Counter: Int64]>([:])
    static let gauges: Set<KVStats.Counter> = [.currItems, .bytes]

    /// `stats reset`: counters start again from zero.
    func resetStats() {
        let now = Dictionary(uniqueKeysWithValues: KVStats.Counter.allCases.map { ($0, store.total($0)) })
        baseline.withLock { $0 = now }
        protocolErrors.store(0, ordering: .relaxed)
    }

    /// A counter as `stats` reports it.
    func reported(_ c: KVStats.Counter) -> Int64 {
        Self.gauges.contains(c) ? store.total(c) : store.total(c) - baseline.withLock { $0[c] ?? 0 }
    }

    public init(store: KVStore, threads: Int) {
        self.store = store
        self.threads = threads
        startTime = store.clock.unixTime
    }

    func countError() { protocolErrors.wrappingAdd(1, ordering: .relaxed) }

    /// `stats` with no argument, memcached's names.
    func generalStats() -> [(String, String)] {
        let s = store
        var out: [(String, String)] = [
            ("pid", String(getpid())), ("uptime", String(s.clock.seconds)), ("time", String(s.clock.unixTime)),
            ("version", Self.version), ("pointer_size", "64"), ("threads", String(threads)),
            ("curr_connections", String(currentConnections.load(ordering: .relaxed))),
            ("total_connections", String(totalConnections.load(ordering: .relaxed))),
            ("protocol_errors", String(protocolErrors.load(ordering: .relaxed))),
        ]
        for c in KVStats.Counter.allCases { out.append((c.name, String(reported(c)))) }
        out.append(("limit_maxbytes", String(s.pool.segmentCount * s.pool.segmentSize)))
        out.append(("hash_bytes", String(s.indexBytes)))
        return out
    }

    func itemStats() -> [(String, String)] {
        var out: [(String, String)] = []
        for p in store.partitions {
            let prefix = "items:\(p.index):"
            out.append((prefix + "number", String(p.stats[.currItems])))
            out.append((prefix + "evicted", String(p.stats[.evictions])))
            out.append((prefix + "reclaimed", String(p.stats[.reclaimed])))
            out.append((prefix + "segments", String(p.segmentsHeld)))
        }
        return out
    }

    func segmentStats() -> [(String, String)] {
        [("segment_size", String(store.pool.segmentSize)), ("segments_total", String(store.pool.segmentCount)),
         ("segments_free", String(store.pool.freeSegments)), ("item_header_bytes", String(ItemView.headerSize)),
         ("total_malloced", String(store.pool.segmentCount * store.pool.segmentSize))]
    }
}

#if canImport(Glibc)
import Glibc
#endif
