import Foundation

/// The variables rule headers name (`$HOME_NET`, `$HTTP_PORTS`): Snort's `ipvar`,
/// `portvar` and `var` lines. Values are kept as text and expanded where a rule uses
/// them, so a variable may name other variables.
public struct RuleVariables: Sendable {
    public private(set) var values: [String: String] = [:]

    public init(_ values: [String: String] = [:]) { self.values = values }

    /// Reads `ipvar|portvar|var NAME VALUE` lines; `#` starts a comment; other
    /// configuration lines (`config`, `preprocessor`, `include`, ...) are ignored.
    public static func load(path: String) throws(RuleError) -> RuleVariables {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw .unreadable("\(path): cannot read the variables file")
        }
        var v = RuleVariables()
        try v.parse(text, file: path)
        return v
    }

    /// Adds the definitions in `text` (errors name `file` and the line).
    public mutating func parse(_ text: String, file: String) throws(RuleError) {
        for (i, raw) in text.utf8.split(separator: 0x0A, omittingEmptySubsequences: false).map(Substring.init).enumerated() {
            let line = raw.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
            let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\r" })
            guard let keyword = words.first, ["ipvar", "portvar", "var"].contains(keyword) else { continue }
            guard words.count >= 3 else {
                throw .malformed("\(file):\(i + 1): \(keyword) needs a name and a value")
            }
            values[String(words[1])] = words[2...].joined()
        }
    }

    public mutating func define(_ name: String, _ value: String) { values[name] = value }

    public subscript(name: String) -> String? { values[name] }
}
