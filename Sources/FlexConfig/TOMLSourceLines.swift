import Foundation

/// Finds the line a TOML key was written on, for error messages (TOMLKit's decoded
/// values carry no positions). It reads the text as configs are written: `key = value`
/// lines in the top table and under `[table]` and `[[table]]` headers. A key it cannot
/// place (in an inline table, a dotted or quoted key) gets the line of the nearest
/// enclosing key or header it can.
public struct TOMLSourceLines: Sendable {
    let lines: [Substring]

    public init(_ text: String) { lines = text.split(separator: "\n", omittingEmptySubsequences: false) }

    /// The line of `key` inside the `index`-th `[[table]]` (or the `[table]` when
    /// `array` is false), else of the table's header; 1-based, 0 if neither is written.
    public func line(table: String, index: Int, key: String, array: Bool = true) -> Int {
        guard let header = header(table: table, index: index, array: array) else { return 0 }
        return assignment(of: key, after: header) ?? header + 1
    }

    /// The line a decoding path (`threads`, `topology.top_n`, `worker[2].node`) is
    /// written on, else that of the nearest enclosing key or header; 0 if none.
    public func line(of path: [any CodingKey]) -> Int {
        if path.isEmpty { return 0 }
        if let at = assignment(of: path) { return at }
        if let header = header(of: path) { return header + 1 }
        return line(of: Array(path.dropLast()))
    }

    /// The line that assigns the path's last key, if the text has one.
    func assignment(of path: [any CodingKey]) -> Int? {
        guard let key = path.last, key.intValue == nil else { return nil }
        let table = Array(path.dropLast())
        if table.isEmpty { return assignment(of: key.stringValue, after: -1) }  // the top table, before any header
        return header(of: table).flatMap { assignment(of: key.stringValue, after: $0) }
    }

    /// The 0-based line of the header of `[name]` or the `[[name]]` at `[name, index]`.
    func header(of table: [any CodingKey]) -> Int? {
        guard let name = table.first, name.intValue == nil else { return nil }
        switch table.count {
        case 1: return header(table: name.stringValue, index: 0, array: false)
        case 2: return table[1].intValue.flatMap { header(table: name.stringValue, index: $0, array: true) }
        default: return nil
        }
    }

    func header(table: String, index: Int, array: Bool) -> Int? {
        let header = array ? "[[\(table)]]" : "[\(table)]"
        var seen = -1
        for (i, l) in lines.enumerated() where l.trimmingCharacters(in: .whitespaces).hasPrefix(header) {
            seen += 1
            if seen == index { return i }
        }
        return nil
    }

    /// The 1-based line that assigns `key` in the table body after 0-based line
    /// `header` (-1: the top table), up to the next header.
    func assignment(of key: String, after header: Int) -> Int? {
        guard !key.isEmpty else { return nil }
        var i = header + 1
        while i < lines.count {
            let l = lines[i].trimmingCharacters(in: .whitespaces)
            if l.hasPrefix("[") { return nil }
            if l.hasPrefix(key) && l.dropFirst(key.count).trimmingCharacters(in: .whitespaces).hasPrefix("=") { return i + 1 }
            i += 1
        }
        return nil
    }
}
