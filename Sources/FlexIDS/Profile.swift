import CFlexSys
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

    /// Inspects records `0 ..< count` of `trace` on one instance and sums per flow group.
    public static func measure(engine: DetectionEngine, trace: Trace, count: Int, rules: [String], prefix: Double) -> Profile {
        let inspector = Inspector(engine: engine)
        var sums: [FlowGroup: (packets: Int, bytes: Int, cycles: UInt64)] = [:]
        for i in 0..<count {
            let frame = trace.frame(i)
            let r = trace.records[i]
            let before = inspector.counters.cycles
            inspector.inspect(frame, number: r.number, timestampNanoseconds: r.timestampNanoseconds)
            let spent = inspector.counters.cycles &- before
            guard let parsed = try? ParsedFrame(parsing: frame), parsed.layers.contains(.ipv4) else { continue }
            let g = engine.flowGroup(of: parsed)
            sums[g, default: (0, 0, 0)].packets += 1
            sums[g, default: (0, 0, 0)].bytes += frame.count
            sums[g, default: (0, 0, 0)].cycles &+= spent
        }
        let entries = sums.map { g, s in
            Entry(group: g, name: g.description, portGroups: engine.groupNames(of: g), packets: s.packets, bytes: s.bytes, cycles: s.cycles)
        }.sorted { $0.cycles != $1.cycles ? $0.cycles > $1.cycles : $0.group < $1.group }
        return Profile(rules: rules, pcap: trace.path, prefix: prefix, packets: count, entries: entries)
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
    /// with the fewest cycles so far (ties: the lower instance).
    public func partition(instances: Int) -> (assignment: [(group: FlowGroup, instance: Int, share: Double)], load: [UInt64]) {
        var load = [UInt64](repeating: 0, count: instances)
        let total = Double(max(entries.reduce(0) { $0 + $1.cycles }, 1))
        var out: [(FlowGroup, Int, Double)] = []
        for e in entries {
            let target = load.indices.min { load[$0] != load[$1] ? load[$0] < load[$1] : $0 < $1 }!
            load[target] &+= e.cycles
            out.append((e.group, target, Double(e.cycles) / total))
        }
        return (out, load)
    }
}

public struct ProfileError: Error, CustomStringConvertible {
    public let description: String
    init(_ d: String) { description = d }
}
