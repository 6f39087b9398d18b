import TOMLKit

/// A check every TOML document passes before TOMLKit parses it. TOMLKit's parser
/// (toml++ 3) asserts, and in release builds assumes, that a key starts with a
/// bare-key character or a quote; a table name like `[~` or `[\u{F5}` trips it (found
/// by `Scripts/fuzz.sh program` and `storm-config`). So, before the parser sees a
/// document, every key (at the start of a line, in a table header, in an inline
/// table) must be bare (`A-Z a-z 0-9 _ -`) or quoted, with dots between parts, and
/// non-ASCII text may stand only in strings and comments, as TOML itself says: valid
/// documents pass unchanged, hostile ones get an error with their line.
public enum TOMLInput {
    /// Checks `text`, then decodes it strictly (unknown keys are errors): how every
    /// TOML document in the project is read. Every error, the parser's and the
    /// decoder's too, is a `TOMLInputError` naming the key and, where the text shows
    /// it, the line.
    public static func decode<T: Decodable>(_ type: T.Type, from text: String) throws(TOMLInputError) -> T {
        try check(text)
        do {
            return try TOMLDecoder(strictDecoding: true).decode(type, from: text)
        } catch {
            throw TOMLInputError(decoding: error, of: TOMLSourceLines(text))
        }
    }

    /// Throws, naming the line, at the first key or character TOML does not allow.
    public static func check(_ text: String) throws(TOMLInputError) {
        var scan = Scanner(bytes: Array(text.utf8))
        try scan.document()
    }

    struct Scanner {
        let bytes: [UInt8]
        var i = 0
        var line = 1
        /// Open inline tables (`{`) and arrays (`[`) inside the current value.
        var nesting: [UInt8] = []

        var current: UInt8? { i < bytes.count ? bytes[i] : nil }

        func fail(_ what: String) -> TOMLInputError { TOMLInputError(line: line, problem: what) }

        static func isBare(_ c: UInt8) -> Bool {
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39) || c == 0x5F || c == 0x2D
        }

        mutating func skipBlanks() { while let c = current, c == 0x20 || c == 0x09 { i += 1 } }

        /// A dotted key up to (not past) `=`, `]` or the end of the line.
        mutating func key() throws(TOMLInputError) {
            while true {
                skipBlanks()
                guard let c = current else { throw fail("a key is missing") }
                if c == UInt8(ascii: "\"") || c == UInt8(ascii: "'") {
                    try string()
                } else if Self.isBare(c) {
                    while let b = current, Self.isBare(b) { i += 1 }
                } else {
                    throw fail("a key must be bare (A-Z a-z 0-9 _ -) or quoted")
                }
                skipBlanks()
                guard current == UInt8(ascii: ".") else { return }
                i += 1
            }
        }

        /// A basic or literal string, single- or multi-line; `i` at its first quote.
        mutating func string() throws(TOMLInputError) {
            let quote = bytes[i]
            let triple = i + 2 < bytes.count && bytes[i + 1] == quote && bytes[i + 2] == quote
            i += triple ? 3 : 1
            while let c = current {
                if c == 0x0A {
                    guard triple else { throw fail("a string is not closed on its line") }
                    line += 1
                } else if c == UInt8(ascii: "\\") && quote == UInt8(ascii: "\"") {
                    i += 1
                } else if c == quote && (!triple || (i + 2 < bytes.count && bytes[i + 1] == quote && bytes[i + 2] == quote)) {
                    i += triple ? 3 : 1
                    return
                }
                i += 1
            }
            throw fail("a string is not closed")
        }

        mutating func document() throws(TOMLInputError) {
            while current != nil {
                skipBlanks()
                guard let c = current else { return }
                switch c {
                case 0x0A, 0x0D: i += 1; if c == 0x0A { line += 1 }
                case UInt8(ascii: "#"): comment()
                case UInt8(ascii: "["):
                    i += 1
                    let double = current == UInt8(ascii: "[")
                    if double { i += 1 }
                    try key()
                    // The header's own closing bracket(s), then only a comment.
                    for _ in 0..<(double ? 2 : 1) {
                        guard current == UInt8(ascii: "]") else { throw fail("a table name must end with ]") }
                        i += 1
                    }
                    try rest()
                default:
                    try key()
                    try assignment()
                    try rest()
                }
            }
        }

        /// After a key: `=` and the start of a value (not a closer, a comma or nothing).
        mutating func assignment() throws(TOMLInputError) {
            skipBlanks()
            guard current == UInt8(ascii: "=") else { throw fail("a key must be followed by =") }
            i += 1
            skipBlanks()
            guard let c = current, !Self.endsValue(c) else { throw fail("a value is missing") }
        }

        static func endsValue(_ c: UInt8) -> Bool {
            c == UInt8(ascii: ",") || c == UInt8(ascii: "]") || c == UInt8(ascii: "}") || c == UInt8(ascii: "#") || c == 0x0A || c == 0x0D
        }

        /// Inside an array, after `[` or `,`: blanks, line breaks and comments, then an
        /// element or the closing `]`, never another comma or a `}`.
        mutating func element() throws(TOMLInputError) {
            while let c = current {
                if c == 0x20 || c == 0x09 || c == 0x0D { i += 1 } else if c == 0x0A { line += 1; i += 1 } else if c == UInt8(ascii: "#") { comment() } else { break }
            }
            guard let c = current, c != UInt8(ascii: ","), c != UInt8(ascii: "}") else { throw fail("an array element is missing") }
        }

        mutating func comment() { while let c = current, c != 0x0A { i += 1 } }

        /// The rest of a line after a key or table name: values, with their strings,
        /// arrays and inline tables (whose keys are checked too), to the end of the line
        /// (or further, while arrays and inline tables stay open).
        mutating func rest() throws(TOMLInputError) {
            while let c = current {
                switch c {
                case 0x0A:
                    if nesting.isEmpty { return }
                    line += 1
                    i += 1
                case UInt8(ascii: "#"): comment()
                case UInt8(ascii: "\""), UInt8(ascii: "'"): try string()
                case UInt8(ascii: "{"):
                    nesting.append(c)
                    i += 1
                    skipBlanks()
                    if current != UInt8(ascii: "}") {
                        try key()
                        try assignment()
                    }
                case UInt8(ascii: ","):
                    i += 1
                    if nesting.last == UInt8(ascii: "{") {
                        skipBlanks()
                        try key()
                        try assignment()
                    } else if nesting.last == UInt8(ascii: "[") {
                        try element()
                    }
                case UInt8(ascii: "["):
                    // An array only inside a value (after `=` or inside another value).
                    nesting.append(c)
                    i += 1
                    try element()
                case UInt8(ascii: "}"), UInt8(ascii: "]"):
                    guard nesting.last == (c == UInt8(ascii: "}") ? UInt8(ascii: "{") : UInt8(ascii: "[")) else {
                        throw fail("an unbalanced \(c == UInt8(ascii: "}") ? "}" : "]")")
                    }
                    nesting.removeLast()
                    i += 1
                default:
                    if c >= 0x80 { throw fail("a non-ASCII character outside a string or comment") }
                    i += 1
                }
            }
        }
    }
}

/// A TOML document that could not be read: a key or character TOML does not allow, a
/// syntax error, an unknown or missing key, a value of the wrong type.
public struct TOMLInputError: Error, CustomStringConvertible, Sendable {
    /// 1-based; 0 when the text does not show where (a missing key of the top table).
    public let line: Int
    public let problem: String
    public var description: String { line > 0 ? "line \(line): \(problem)" : problem }
}

extension TOMLInputError {
    /// TOMLKit's error, with the line it concerns found in `lines` (its decoded values
    /// carry no positions).
    init(decoding error: any Error, of lines: TOMLSourceLines) {
        switch error {
        case let e as TOMLParseError:
            self.init(line: e.source.begin.line, problem: e.description)
        case let e as UnexpectedKeysError:
            let paths = e.keys.sorted { $0.key < $1.key }.map { $0.value + [TOMLKey($0.key)] }
            self.init(line: paths.first.map(lines.line(of:)) ?? 0, problem: "unknown key(s) \(paths.map(Self.name).joined(separator: ", "))")
        case let DecodingError.keyNotFound(key, context):
            // TOMLKit reports a key of the wrong type as not found too: the text tells which.
            // (Its context's path may already end with the key.)
            let path = context.codingPath.last?.stringValue == key.stringValue ? context.codingPath : context.codingPath + [key]
            if let at = lines.assignment(of: path) {
                self.init(line: at, problem: "`\(Self.name(path))` has a value of the wrong type")
            } else {
                self.init(line: lines.line(of: Array(path.dropLast())), problem: "missing `\(Self.name(path))`")
            }
        case let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context):
            self.init(line: lines.line(of: context.codingPath), problem: "`\(Self.name(context.codingPath))` has a value of the wrong type")
        case let DecodingError.dataCorrupted(context):
            self.init(line: lines.line(of: context.codingPath), problem: "`\(Self.name(context.codingPath))`: \(context.debugDescription)")
        default:
            self.init(line: 0, problem: "\(error)")
        }
    }

    /// A decoding path as a user writes it: `stage[2].action` (tables counted from 1).
    static func name(_ path: [any CodingKey]) -> String {
        var name = ""
        for key in path {
            if let index = key.intValue { name += "[\(index + 1)]" } else { name += name.isEmpty ? key.stringValue : ".\(key.stringValue)" }
        }
        return name
    }
}

/// A key by name, to extend a decoding path.
struct TOMLKey: CodingKey {
    var stringValue: String
    var intValue: Int? { nil }
    init(_ name: String) { stringValue = name }
    init?(stringValue: String) { self.stringValue = stringValue }
    init?(intValue: Int) { nil }
}
