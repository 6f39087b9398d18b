/// A check every TOML document passes before TOMLKit parses it. TOMLKit's parser
/// (toml++ 3) asserts, and in release builds assumes, that a table header's name
/// starts with a bare-key character or a quote; a byte outside ASCII there (`[\u{F5}`)
/// trips it (found by `Scripts/fuzz.sh program`). TOML allows non-ASCII text only inside
/// strings and comments, so refusing it elsewhere changes nothing for valid documents
/// and keeps hostile ones away from the parser.
public enum TOMLInput {
    /// Throws, naming the line, if `text` has a non-ASCII character outside a string
    /// or a comment.
    public static func check(_ text: String) throws(TOMLInputError) {
        var line = 1
        var state = State.outside
        let bytes = Array(text.utf8)
        var i = 0
        func starts(_ s: String) -> Bool {
            let p = Array(s.utf8)
            return i + p.count <= bytes.count && Array(bytes[i..<(i + p.count)]) == p
        }
        while i < bytes.count {
            let b = bytes[i]
            if b == 0x0A { line += 1 }
            switch state {
            case .outside:
                if b >= 0x80 { throw TOMLInputError(line: line) }
                if b == UInt8(ascii: "#") { state = .comment }
                else if starts("\"\"\"") { state = .multiBasic; i += 2 }
                else if starts("'''") { state = .multiLiteral; i += 2 }
                else if b == UInt8(ascii: "\"") { state = .basic }
                else if b == UInt8(ascii: "'") { state = .literal }
            case .comment: if b == 0x0A { state = .outside }
            case .basic:
                if b == UInt8(ascii: "\\") { i += 1 }
                else if b == UInt8(ascii: "\"") || b == 0x0A { state = .outside }
            case .literal: if b == UInt8(ascii: "'") || b == 0x0A { state = .outside }
            case .multiBasic:
                if b == UInt8(ascii: "\\") { i += 1 }
                else if starts("\"\"\"") { state = .outside; i += 2 }
            case .multiLiteral: if starts("'''") { state = .outside; i += 2 }
            }
            i += 1
        }
    }

    enum State { case outside, comment, basic, literal, multiBasic, multiLiteral }
}

/// A TOML document with a character TOML does not allow where it stands.
public struct TOMLInputError: Error, CustomStringConvertible, Sendable {
    public let line: Int
    public var description: String { "line \(line): a non-ASCII character outside a string or comment" }
}
