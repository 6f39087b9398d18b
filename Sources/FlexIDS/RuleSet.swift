import Foundation

/// Rules loaded from files, and the ones skipped with the reason and place of each.
public struct RuleSet: Sendable {
    public struct Skipped: Sendable, CustomStringConvertible {
        public var location: RuleLocation
        public var reason: RuleError
        public var description: String { "\(location): skipped: \(reason)" }
    }

    public var rules: [SnortRule] = []
    public var skipped: [Skipped] = []

    public init() {}

    /// Loads every rule in `paths` (lines ending in `\` continue; `#` lines are comments,
    /// including disabled rules), each file in the syntax it shows (`RuleSyntax.detect`:
    /// Snort 2.9 or Snort 3, whose rules may also run over several lines until their
    /// options close). A file that cannot be read throws; a rule that cannot be used is
    /// skipped and recorded.
    public static func load(paths: [String], variables: RuleVariables) throws(RuleError) -> RuleSet {
        var set = RuleSet()
        for path in paths {
            guard let data = FileManager.default.contents(atPath: path) else {
                throw .unreadable("\(path): cannot read the rule file")
            }
            set.add(String(decoding: data, as: UTF8.self), file: path, variables: variables)
        }
        return set
    }

    /// Adds the rules in `text`, naming `file` in locations.
    public mutating func add(_ text: String, file: String, variables: RuleVariables) {
        let syntax = RuleSyntax.detect(text)
        var pending = ""
        var firstLine = 0
        // Lines split on the bytes: a CR LF pair is one Character, so a Character split
        // would not see the LF.
        for (i, raw) in text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).enumerated() {
            var line = Substring(raw)
            if line.utf8.last == 0x0D { line = line.dropLast() }
            let t = line.trimmingWhitespace
            if t.isEmpty || t.first == "#" { continue }
            if pending.isEmpty { firstLine = i + 1 }
            if line.last == "\\" {
                pending += line.dropLast()
                continue
            }
            pending += line
            // Snort 3: a rule goes on until its option list closes.
            if syntax == .snort3 && pending.contains("(") && Substring(pending).trimmingWhitespace.last != ")" {
                pending += " "
                continue
            }
            let location = RuleLocation(file: file, line: firstLine)
            do {
                rules.append(try RuleParser.parse(Substring(pending), at: location, variables: variables, syntax: syntax))
            } catch {
                skipped.append(Skipped(location: location, reason: error))
            }
            pending = ""
        }
        if !pending.isEmpty {
            skipped.append(Skipped(location: RuleLocation(file: file, line: firstLine), reason: .malformed("the file ends inside a continued rule")))
        }
    }

    /// Skips counted by reason, most frequent first, with where each first happened.
    public var skipSummary: [(reason: String, count: Int, first: RuleLocation)] {
        var byReason: [String: (Int, RuleLocation)] = [:]
        for s in skipped {
            let k = s.reason.category
            byReason[k] = ((byReason[k]?.0 ?? 0) + 1, byReason[k]?.1 ?? s.location)
        }
        return byReason.map { ($0.key, $0.value.0, $0.value.1) }.sorted { $0.count != $1.count ? $0.count > $1.count : $0.reason < $1.reason }
    }
}
