import FlexWire
import Foundation

/// Streams of user names for the spouts: a seeded generator with power-law (Zipf) user
/// activity, the one-name-per-line file format, and the exact top-n of a finite trace
/// (what the cluster's final ranking must equal).
public enum UserTrace {
    /// A trace of `tuples` names drawn from `users` distinct users whose activity
    /// follows Zipf(`exponent`): user k (1-based) is drawn with weight 1/k^exponent. The
    /// same arguments always give the same trace.
    public static func generate(users: Int, tuples: Int, exponent: Double, seed: UInt64) -> [UserName] {
        precondition(users >= 1 && tuples >= 0 && exponent >= 0)
        var rng = SplitMix64(seed: seed)
        let names = makeNames(users, rng: &rng)
        var cumulative = [Double](repeating: 0, count: users)
        var total = 0.0
        for k in 0..<users {
            total += 1 / pow(Double(k + 1), exponent)
            cumulative[k] = total
        }
        var trace: [UserName] = []
        trace.reserveCapacity(tuples)
        for _ in 0..<tuples {
            let u = rng.nextUnit() * total
            var lo = 0, hi = users - 1
            while lo < hi {
                let mid = (lo + hi) / 2
                if cumulative[mid] < u { lo = mid + 1 } else { hi = mid }
            }
            trace.append(names[lo])
        }
        return trace
    }

    /// Distinct, handle-like names ("kavoru", "tesimla42"), in a seeded random order.
    static func makeNames(_ count: Int, rng: inout SplitMix64) -> [UserName] {
        let consonants = Array("bcdfghjklmnprstvwz"), vowels = Array("aeiou")
        var seen = Set<String>()
        var names: [UserName] = []
        while names.count < count {
            var s = ""
            for _ in 0..<(2 + Int(rng.next() % 3)) {
                s.append(consonants[Int(rng.next() % UInt64(consonants.count))])
                s.append(vowels[Int(rng.next() % UInt64(vowels.count))])
            }
            if rng.next() % 3 == 0 { s += String(rng.next() % 100) }
            if seen.insert(s).inserted { names.append(UserName(s)!) }
        }
        return names
    }

    /// Writes one name per line.
    public static func write(_ trace: [UserName], to path: String) throws {
        var text = ""
        text.reserveCapacity(trace.count * 10)
        for n in trace { text += n.description; text += "\n" }
        guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else {
            throw TraceError("\(path): cannot write the file")
        }
    }

    /// Reads a trace: one name per line; blank lines and lines starting with `#` are
    /// skipped. A name that is not a valid user name is an error naming its line.
    public static func load(path: String) throws -> [UserName] {
        guard let data = FileManager.default.contents(atPath: path) else { throw TraceError("\(path): cannot read the file") }
        var trace: [UserName] = []
        for (i, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let t = line.trimmingCharacters(in: .whitespaces)
            if t.isEmpty || t.hasPrefix("#") { continue }
            guard let name = UserName(t) else {
                throw TraceError("\(path):\(i + 1): \"\(t.prefix(40))\" is not a user name (1-\(UserName.maxLength) bytes)")
            }
            trace.append(name)
        }
        return trace
    }

    /// The exact top `n` of a finite trace: highest count first, ties by name.
    public static func exactTopN(_ trace: [UserName], n: Int) -> [RankEntry] {
        var counts: [UserName: UInt64] = [:]
        for u in trace { counts[u, default: 0] += 1 }
        return RankEntry.top(n, of: counts.map { RankEntry(user: $0.key, count: $0.value) })
    }
}

public struct TraceError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}
