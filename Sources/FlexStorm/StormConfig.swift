import FlexConfig
import Foundation
import FlexWire

/// A FlexStorm cluster: the topology's parameters, the nodes and their addresses, and
/// which node runs each worker, read from one TOML file (`Configs/storm-*.toml`):
///
/// ```toml
/// [topology]
/// top_n = 10               # users in the final ranking
/// window_slots = 6         # the counters' sliding window: slots ...
/// window_seconds = 60.0    # ... covering this many seconds
/// emit_interval_ms = 1000  # counters and rankers emit, the total ranker prints, this often
/// mux_batch_ms = 10        # demux mode: the multiplexer holds tuples up to this long
/// send_window = 128        # DCCP send window (tuples in flight per connection)
/// queue_depth = 1024       # each worker's input queue (slots)
/// spout_rate = 0           # tuples/s per spout; 0: as fast as flow control allows
/// peer_down_ms = 3000      # a peer that acks nothing this long is down: tuples for it are dropped
///
/// [[node]]
/// name = "a"
/// address = "127.0.0.1"    # the node's IPv4 address
/// port = 7100              # its UDP port (DCCP-UDP) and DCCP service port
///
/// [[worker]]
/// kind = "spout"           # spout, counter, ranker or total (exactly one total)
/// node = "a"
/// replicas = 2
/// ```
///
/// Worker ids are given in file order, replicas in turn, from 1.
public struct StormConfig: Sendable {
    public enum Role: String, Sendable, CaseIterable {
        case spout, counter, ranker, total
    }

    public struct Node: Sendable, Equatable {
        public var name: String
        public var address: IPv4Address
        public var port: UInt16
    }

    public struct Worker: Sendable, Equatable {
        public var id: UInt16
        public var role: Role
        /// Index into `nodes`.
        public var node: Int
        /// Index among the workers of its role (fields grouping picks by it).
        public var replica: Int
    }

    public var topN = 10
    public var windowSlots = 6
    public var windowSeconds = 60.0
    public var emitIntervalMilliseconds = 1000
    public var muxBatchMilliseconds = 10
    public var sendWindow = 128
    public var queueDepth = 1024
    public var spoutRate = 0.0
    public var peerDownMilliseconds = 3000
    public var nodes: [Node] = []
    /// Worker `id` is `workers[id - 1]`.
    public var workers: [Worker] = []

    public init() {}

    public func workers(_ role: Role) -> [Worker] { workers.filter { $0.role == role } }
    public func worker(_ id: UInt16) -> Worker? {
        id >= 1 && Int(id) <= workers.count ? workers[Int(id) - 1] : nil
    }
    public func nodeIndex(named name: String) -> Int? { nodes.firstIndex { $0.name == name } }

    public var emitInterval: UInt64 { UInt64(emitIntervalMilliseconds) * 1_000_000 }
    public var muxBatch: UInt64 { UInt64(muxBatchMilliseconds) * 1_000_000 }
    public var slotLength: UInt64 { UInt64(windowSeconds * 1e9) / UInt64(windowSlots) }

    // MARK: Loading

    public static func load(path: String) throws -> StormConfig {
        guard let text = FileManager.default.contents(atPath: path).flatMap({ String(data: $0, encoding: .utf8) }) else {
            throw StormConfigError("\(path): cannot read the file")
        }
        return try parse(text, source: path)
    }

    struct FileModel: Codable {
        var topology: TopologyModel?
        var node: [NodeModel]?
        var worker: [WorkerModel]?
    }
    struct TopologyModel: Codable {
        var top_n: Int?, window_slots: Int?, window_seconds: Number?, emit_interval_ms: Int?
        var mux_batch_ms: Int?, send_window: Int?, queue_depth: Int?, spout_rate: Number?, peer_down_ms: Int?
    }
    /// A TOML number written with or without a fraction (`60` or `60.0`).
    struct Number: Codable {
        var value: Double
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let i = try? c.decode(Int.self) { value = Double(i) } else { value = try c.decode(Double.self) }
        }
        func encode(to encoder: Encoder) throws {
            var c = encoder.singleValueContainer()
            try c.encode(value)
        }
    }
    struct NodeModel: Codable {
        var name: String
        var address: String
        var port: Int
    }
    struct WorkerModel: Codable {
        var kind: String
        var node: String
        var replicas: Int?
    }

    /// Parses and checks a config; errors name `source` and the line.
    public static func parse(_ text: String, source: String = "<config>") throws -> StormConfig {
        let lines = TOMLSourceLines(text)
        let file: FileModel
        do {
            file = try TOMLInput.decode(FileModel.self, from: text)
        } catch {
            throw StormConfigError(error.line > 0 ? "\(source):\(error.line): \(error.problem)" : "\(source): \(error.problem)")
        }

        var c = StormConfig()
        func fail(_ line: Int, _ message: String) -> StormConfigError { StormConfigError("\(source):\(line): \(message)") }
        if let t = file.topology {
            let at = { (key: String) in lines.line(table: "topology", index: 0, key: key, array: false) }
            func positive(_ v: Int?, _ key: String, max: Int = 1 << 30) throws -> Int? {
                guard let v else { return nil }
                guard v >= 1 && v <= max else { throw fail(at(key), "`\(key)` must be between 1 and \(max), not \(v)") }
                return v
            }
            c.topN = try positive(t.top_n, "top_n", max: 255) ?? c.topN
            c.windowSlots = try positive(t.window_slots, "window_slots", max: 1024) ?? c.windowSlots
            c.emitIntervalMilliseconds = try positive(t.emit_interval_ms, "emit_interval_ms") ?? c.emitIntervalMilliseconds
            c.muxBatchMilliseconds = try positive(t.mux_batch_ms, "mux_batch_ms") ?? c.muxBatchMilliseconds
            c.peerDownMilliseconds = try positive(t.peer_down_ms, "peer_down_ms") ?? c.peerDownMilliseconds
            c.sendWindow = try positive(t.send_window, "send_window", max: 1 << 16) ?? c.sendWindow
            c.queueDepth = try positive(t.queue_depth, "queue_depth", max: 1 << 20) ?? c.queueDepth
            for (key, v) in [("send_window", c.sendWindow), ("queue_depth", c.queueDepth)] where v & (v - 1) != 0 || v < 2 {
                throw fail(at(key), "`\(key)` must be a power of two of at least 2, not \(v)")
            }
            if let w = t.window_seconds?.value {
                guard w > 0 && w <= 86_400 * 365 else { throw fail(at("window_seconds"), "`window_seconds` must be positive") }
                c.windowSeconds = w
            }
            if let r = t.spout_rate?.value {
                guard r >= 0 else { throw fail(at("spout_rate"), "`spout_rate` must not be negative") }
                c.spoutRate = r
            }
        }

        for (i, n) in (file.node ?? []).enumerated() {
            let at = { (key: String) in lines.line(table: "node", index: i, key: key) }
            guard !n.name.isEmpty else { throw fail(at("name"), "a node needs a name") }
            guard c.nodeIndex(named: n.name) == nil else { throw fail(at("name"), "node \"\(n.name)\" is defined twice") }
            guard let address = IPv4Address(n.address) else { throw fail(at("address"), "\"\(n.address)\" is not an IPv4 address") }
            guard (1...65_535).contains(n.port) else { throw fail(at("port"), "port \(n.port) is out of range 1-65535") }
            if let other = c.nodes.first(where: { $0.address == address && Int($0.port) == n.port }) {
                throw fail(at("port"), "node \"\(n.name)\" has the same address and port as \"\(other.name)\"")
            }
            c.nodes.append(Node(name: n.name, address: address, port: UInt16(n.port)))
        }
        guard !c.nodes.isEmpty else { throw StormConfigError("\(source): no [[node]] is defined") }

        var replicas: [Role: Int] = [:]
        for (i, w) in (file.worker ?? []).enumerated() {
            let at = { (key: String) in lines.line(table: "worker", index: i, key: key) }
            guard let role = Role(rawValue: w.kind) else {
                throw fail(at("kind"), "unknown worker kind \"\(w.kind)\" (spout, counter, ranker, total)")
            }
            guard let node = c.nodeIndex(named: w.node) else {
                throw fail(at("node"), "worker names node \"\(w.node)\", which no [[node]] defines")
            }
            let count = w.replicas ?? 1
            guard count >= 1 && count <= 64 else { throw fail(at("replicas"), "`replicas` must be between 1 and 64, not \(count)") }
            for _ in 0..<count {
                let id = UInt16(c.workers.count + 1)
                c.workers.append(Worker(id: id, role: role, node: node, replica: replicas[role, default: 0]))
                replicas[role, default: 0] += 1
            }
        }
        for role in [Role.spout, .counter, .ranker] where replicas[role, default: 0] == 0 {
            throw StormConfigError("\(source): the topology needs at least one \(role) worker")
        }
        guard replicas[.total, default: 0] == 1 else {
            throw StormConfigError("\(source): the topology needs exactly one total ranker (kind = \"total\"), not \(replicas[.total, default: 0])")
        }
        guard c.workers.count <= 1024 else { throw StormConfigError("\(source): more than 1024 workers") }
        for (i, node) in c.nodes.enumerated() where c.workers.filter({ $0.node == i }).count > 64 {
            throw StormConfigError("\(source): node \"\(node.name)\" runs more than 64 workers")
        }
        return c
    }

    /// The same cluster with every node on 127.0.0.1, node i on port `basePort + i`:
    /// a multi-host config run in one process or one namespace.
    public func onLoopback(basePort: UInt16) -> StormConfig {
        var c = self
        for i in c.nodes.indices {
            c.nodes[i].address = .loopback
            c.nodes[i].port = basePort &+ UInt16(i)
        }
        return c
    }

    // MARK: Groupings

    /// Fields grouping: the worker of `role` (counter or ranker) that owns `user`.
    @inline(__always)
    public func owner(of user: UserName, among ids: [UInt16]) -> UInt16 {
        ids[Int(user.groupingHash % UInt64(ids.count))]
    }
}

/// A config that cannot be used: file, line and what is wrong.
public struct StormConfigError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
