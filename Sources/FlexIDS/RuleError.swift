/// Where a rule (or a variable) came from: file and line, for every message about it.
public struct RuleLocation: Sendable, Equatable, CustomStringConvertible {
    public var file: String
    public var line: Int
    public init(file: String, line: Int) {
        self.file = file
        self.line = line
    }
    public var description: String { "\(file):\(line)" }
}

/// Why a rule or a variables file could not be used. Rules with these are skipped and
/// reported; the rest of the set loads.
public enum RuleError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The text is not valid Snort 2.9 syntax (or a value is out of range).
    case malformed(String)
    /// A rule option (or pcre flag) this tool does not implement.
    case unsupported(String)
    /// `$NAME` names no variable.
    case undefinedVariable(String)
    /// PCRE2 rejected a `pcre` pattern.
    case badPattern(String)
    /// A file could not be read.
    case unreadable(String)

    public var description: String {
        switch self {
        case .malformed(let m): return "malformed: \(m)"
        case .unsupported(let o): return "unsupported option \(o)"
        case .undefinedVariable(let v): return "undefined variable $\(v)"
        case .badPattern(let m): return "pcre rejected: \(m)"
        case .unreadable(let m): return m
        }
    }

    /// A short key for summaries ("unsupported option http_uri").
    public var category: String {
        switch self {
        case .malformed: return "malformed"
        case .unsupported(let o): return "unsupported option \(o)"
        case .undefinedVariable(let v): return "undefined variable $\(v)"
        case .badPattern: return "pcre rejected"
        case .unreadable: return "unreadable"
        }
    }
}
