import FlexWire
import Foundation

/// What `flexids profile` learns from a trace prefix: per flow group, the packets, bytes
/// and inspection cycles, and the port groups its packets check. Stored as JSON.
public struct Profile: Codable, Sendable {
    public struct Entry: Codable, Sendable {
        public var group: FlowGroup
        public var name: String
        public var portGroups: [String]
        public var packets: Int
        public var bytes: Int
        public var cycles: UInt64
    }

    public var rules: [String]
    public var pcap: String
    public var prefix: Double
    public var packets: Int
    /// Heaviest (most cycles) first.
    public var entries: [Entry]
    /// Bytes of rule state (automaton and rule lists) of each port group named above.
    public var portGroupBytes: [String: Int]

    /// Inspects records `0 ..< count` of `trace` on one instance and sums per flow group.
    public static func measure(engine: DetectionEngine, trace: Trace, count: Int, rules: [String], prefix: Double) -> Profile {
        let inspector = Inspector(engine: engine)
        var sums: [FlowGroup: (packets: Int, bytes: Int, cycles: UInt64)] = [:]
        for i in 0..<count {
            let before = inspector.counters.cycles
            let parsed = inspector.inspect(trace, record: i)
            let spent = inspector.counters.cycles &- before
            guard let parsed else { continue }
            let g = engine.flowGroup(of: parsed)
            sums[g, default: (0, 0, 0)].packets += 1
            sums[g, default: (0, 0, 0)].bytes += trace.records[i].length
            sums[g, default: (0, 0, 0)].cycles &+= spent
        }
        let entries = sums.map { g, s in
            Entry(group: g, name: g.description, portGroups: engine.groupNames(of: g), packets: s.packets, bytes: s.bytes, cycles: s.cycles)
        }.sorted { $0.cycles != $1.cycles ? $0.cycles > $1.cycles : $0.group < $1.group }
        var bytes: [String: Int] = [:]
        for g in engine.groups { bytes[g.name] = g.memoryFootprint }
        return Profile(rules: rules, pcap: trace.path, prefix: prefix, packets: count, entries: entries, portGroupBytes: bytes)
    }

    public static func load(path: String) throws -> Profile {
        guard let data = FileManager.default.contents(atPath: path) else { throw ProfileError("\(path): cannot read the profile") }
        do { return try JSONDecoder().decode(Profile.self, from: data) } catch {
            throw ProfileError("\(path): not a flexids profile (\(error))")
        }
    }

    public func write(to path: String) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        guard FileManager.default.createFile(atPath: path, contents: try encoder.encode(self)) else {
            throw ProfileError("\(path): cannot write the profile")
        }
    }

    /// Greedy partition (thesis 5.3): flow groups heaviest first, each onto the instance
    /// with the fewest cycles so far. Among instances within `slack` of a fair share
    /// (all cycles / N) of that least load, the one already holding the most bytes of the
    /// group's port groups wins (then the less loaded, then the lower), so groups that
    /// share automata share an instance; `slack` 0 is the plain greedy.
    ///
    /// With `split`, a group heavier than a fair share is spread over as many instances
    /// as it has fair shares (rounded up), its flows divided among them by a symmetric
    /// hash; otherwise one heavy group can leave an instance with far more than its share.
    public func partition(instances: Int, split: Bool = true, slack: Double = 0) -> (assignment: [Assignment], load: [UInt64]) {
        var load = [UInt64](repeating: 0, count: instances)
        var held = [Set<String>](repeating: [], count: instances)
        let total = max(entries.reduce(0.0) { $0 + Double($1.cycles) }, 1)
        let fair = total / Double(instances)
        var out: [Assignment] = []
        for e in entries {
            let parts = split ? min(instances, max(1, Int((Double(e.cycles) / fair).rounded(.up)))) : 1
            func overlap(_ i: Int) -> Int { e.portGroups.reduce(0) { $0 + (held[i].contains($1) ? portGroupBytes[$1] ?? 0 : 0) } }
            var chosen: [Int] = []
            for _ in 0..<parts {
                let free = load.indices.filter { !chosen.contains($0) }
                let least = Double(free.map { load[$0] }.min()!)
                let near = free.filter { Double(load[$0]) <= least + slack * fair }
                chosen.append(near.max { (overlap($0), -Double(load[$0]), -$0) < (overlap($1), -Double(load[$1]), -$1) }!)
            }
            chosen.sort()
            for i in chosen {
                load[i] &+= e.cycles / UInt64(parts)  // wraps only on a forged profile
                held[i].formUnion(e.portGroups)
            }
            out.append(Assignment(group: e.group, instances: chosen, share: Double(e.cycles) / total))
        }
        return (out, load)
    }

    /// Where a flow group goes: one instance, or several sharing its flows.
    public struct Assignment: Sendable {
        public var group: FlowGroup
        public var instances: [Int]
        /// Its fraction of the profiled cycles.
        public var share: Double
    }
}

public struct ProfileError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
