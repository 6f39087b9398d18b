#if canImport(Glibc)
import Glibc
#endif
import Logging
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
    public let protocolErrors = Atomic<Int>(0)
    public let threads: Int
    /// memcached's -c: client connections the server accepts at once.
    public var maxConnections = 1024
    /// UDP "connections" memcached counts in curr_connections (one per thread).
    public var udpConnections = 0
    /// Which protocols a connection may speak (memcached's -B).
    public enum Binding: String, Sendable { case auto = "auto-negotiate", ascii, binary }
    public var binding = Binding.auto
    /// flush_all is allowed (memcached's -F turns it off).
    public var flushEnabled = true
    /// What `shutdown` does (memcached's -A enables it); nil: the command is refused.
    public var shutdown: (@Sendable () -> Void)?
    /// GETs answered before they reach a worker (the pipeline's reply table, XDP):
    /// hits memcached would have counted, so `stats` counts them in cmd_get and
    /// get_hits (the server fills this in).
    public var offloadedGets: () -> Int64 = { 0 }
    /// Bytes and connections as the transport counts them (the server fills this in).
    public var transport: () -> TransportCounters = { TransportCounters() }
    public struct TransportCounters {
        public var bytesRead: UInt64 = 0
        public var bytesWritten: UInt64 = 0
        public var rejectedConnections: UInt64 = 0
        public var currentConnections = 0
        public var totalConnections: UInt64 = 0
        public init() {}
    }
    /// Server-wide counters (any worker adds to them).
    enum Counter: Int, CaseIterable { case flushCommands, storeTooLarge, storeNoMemory }
    let counters: UnsafeMutablePointer<Atomic<Int>> = {
        let p = UnsafeMutablePointer<Atomic<Int>>.allocate(capacity: Counter.allCases.count)
        for i in 0..<Counter.allCases.count { (p + i).initialize(to: Atomic(0)) }
        return p
    }()

    deinit {
        counters.deinitialize(count: Counter.allCases.count)
        counters.deallocate()
    }
    let detailEnabled = Atomic<Bool>(false)
    public let verbosity = Atomic<Int>(0)
    /// Where -v output goes: memcached's lines (`<id command`, `>id reply`), one
    /// message each (the flexkvs command bootstraps a handler that prints them to
    /// stderr as memcached does).
    public var logger = Logger(label: "flexkvs")

    /// Whether memcached's -v level `level` is on: 1 client errors, 2 connections,
    /// commands and the first line of each reply, 3 binary requests too.
    @inline(__always) func logs(_ level: Int) -> Bool { verbosity.load(ordering: .relaxed) >= level }

    /// Logs one text command of session `id` and the first line of its reply.
    func logCommand(_ id: UInt32, _ line: UnsafeRawBufferPointer, reply: UnsafeRawBufferPointer) {
        logger.info("<\(id) \(String(decoding: line.prefix(256), as: UTF8.self))")
        guard !reply.isEmpty else { return }
        let end = reply.firstIndex(of: 0x0D) ?? reply.endIndex
        logger.info(">\(id) \(String(decoding: reply[..<end].prefix(256), as: UTF8.self))")
    }
    /// Values of the counters above at the last `stats reset`.
    let resetAt = Mutex<[Int]>([0, 0, 0])
    /// Counter values at the last `stats reset` (reported values are relative to them;
    /// gauges such as curr_items and bytes are never reset).
    let baseline = Mutex<[KVStats.Counter: Int64]>([:])
    static let gauges: Set<KVStats.Counter> = [.currItems, .bytes]

    /// `stats reset`: counters start again from zero.
    func resetStats() {
        let now = Dictionary(uniqueKeysWithValues: KVStats.Counter.allCases.map { ($0, total($0)) })
        baseline.withLock { $0 = now }
        protocolErrors.store(0, ordering: .relaxed)
        resetAt.withLock { $0 = Counter.allCases.map { counters[$0.rawValue].load(ordering: .relaxed) } }
    }

    /// A counter as `stats` reports it.
    func reported(_ c: KVStats.Counter) -> Int64 {
        Self.gauges.contains(c) ? total(c) : total(c) - baseline.withLock { $0[c] ?? 0 }
    }

    /// A counter over the partitions, GETs and hits with those answered before a worker.
    func total(_ c: KVStats.Counter) -> Int64 {
        c == .cmdGet || c == .getHits ? store.total(c) + offloadedGets() : store.total(c)
    }

    public init(store: KVStore, threads: Int) {
        self.store = store
        self.threads = threads
        startTime = store.clock.unixTime
    }

    func count(_ c: Counter) { counters[c.rawValue].wrappingAdd(1, ordering: .relaxed) }

    /// A server-wide counter as `stats` reports it (since the last reset).
    func counted(_ c: Counter) -> Int {
        counters[c.rawValue].load(ordering: .relaxed) - resetAt.withLock { $0[c.rawValue] }
    }

    func countError() { protocolErrors.wrappingAdd(1, ordering: .relaxed) }
}
