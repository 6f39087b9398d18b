import CHyperscan
import Foundation

/// One port group's fast patterns compiled by Hyperscan into a block-mode literal
/// database: case-insensitive (as Snort's fast-pattern matcher; rules confirm case),
/// each pattern reported at most once per scan. Immutable after `init`, so instances
/// share it; scanning needs a `HyperscanScratch` per thread.
public final class HyperscanDatabase: @unchecked Sendable {
    let database: UnsafeMutableRawPointer
    public let patternCount: Int

    /// Whether Hyperscan can be used here (its library loaded and the CPU supports it);
    /// `unavailableReason` says why not.
    public static var isAvailable: Bool { chs_available() != 0 }
    public static var unavailableReason: String { String(cString: chs_unavailable_reason()) }

    /// Compiles `patterns` (pattern id = index; none may be empty), or reads the
    /// database compiled for the same patterns from `cache` (and writes it there when it
    /// had to compile); nil if Hyperscan is unavailable or refuses them (the group then
    /// keeps its own automaton).
    public convenience init?(patterns: [[UInt8]], cache: HyperscanCache?) {
        if let cache, let bytes = cache.load(patterns), let db = bytes.withUnsafeBytes({ b in
            chs_deserialize(b.baseAddress!.assumingMemoryBound(to: CChar.self), b.count)
        }) {
            self.init(database: db, patternCount: patterns.count)
            return
        }
        self.init(patterns: patterns)
        if let cache {
            var bytes: UnsafeMutablePointer<CChar>? = nil
            var length = 0
            if chs_serialize(database, &bytes, &length) == 0, let bytes {
                cache.store(patterns, UnsafeRawBufferPointer(start: bytes, count: length))
                free(bytes)
            }
        }
    }

    init(database: UnsafeMutableRawPointer, patternCount: Int) {
        self.database = database
        self.patternCount = patternCount
    }

    /// Compiles `patterns` (pattern id = index; none may be empty), for block mode or
    /// (`streaming`) for streams; nil if Hyperscan is unavailable or refuses them.
    public init?(patterns: [[UInt8]], streaming: Bool = false) {
        precondition(patterns.allSatisfy { !$0.isEmpty }, "empty fast pattern")
        var error = [CChar](repeating: 0, count: 256)
        // Hyperscan reads the patterns during the call only.
        let copies = patterns.map { p -> UnsafeMutablePointer<CChar> in
            let c = UnsafeMutablePointer<CChar>.allocate(capacity: p.count)
            for (i, b) in p.enumerated() { c[i] = CChar(bitPattern: b) }
            return c
        }
        defer { copies.forEach { $0.deallocate() } }
        let pointers: [UnsafePointer<CChar>?] = copies.map { UnsafePointer($0) }
        let lengths = patterns.map(\.count)
        let compiled = pointers.withUnsafeBufferPointer { p in
            chs_compile_literals(p.baseAddress, lengths, UInt32(patterns.count), streaming ? 1 : 0, &error, error.count)
        }
        guard let db = compiled else { return nil }
        database = db
        patternCount = patterns.count
    }

    deinit { chs_free_database(database) }

    /// Bytes of the compiled database: what a core must cache to scan with it.
    public var memoryFootprint: Int { chs_database_size(database) }

    /// Scans `bytes`, writing each pattern id found once into `scratch.hits` (at most
    /// `patternCount` of them); returns how many.
    @inline(__always)
    func scan(_ bytes: UnsafeRawBufferPointer, _ scratch: HyperscanScratch) -> Int {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        scratch.sink.pointee.count = 0
        _ = chs_scan(database, base, UInt32(truncatingIfNeeded: bytes.count), scratch.space, recordHit, scratch.sink)
        return scratch.sink.pointee.count
    }
}

extension HyperscanDatabase {
    /// Bytes of one stream's state (a streaming-mode database; 0 for a block one).
    public var streamStateSize: Int { chs_stream_size(database) }
}

/// One stream of a streaming-mode database: a flow's bytes scanned in order, so a
/// pattern split between two scans is still found. One thread owns it.
final class HyperscanStream {
    private var stream: UnsafeMutableRawPointer?
    let database: HyperscanDatabase

    /// Nil if Hyperscan could not open it (out of memory).
    init?(_ database: HyperscanDatabase) {
        guard let s = chs_open_stream(database.database) else { return nil }
        stream = s
        self.database = database
    }

    deinit { if stream != nil { chs_close_stream(stream, nil, nil, nil) } }

    /// Scans the stream's next bytes; pattern ids found land in `scratch.hits` as a
    /// block scan's do (once per stream: the patterns are single-match).
    func scan(_ bytes: UnsafeRawBufferPointer, _ scratch: HyperscanScratch) -> Int {
        guard let stream, let base = bytes.baseAddress, bytes.count > 0 else { return 0 }
        scratch.sink.pointee.count = 0
        _ = chs_scan_stream(stream, base, UInt32(truncatingIfNeeded: bytes.count), scratch.space, recordHit, scratch.sink)
        return scratch.sink.pointee.count
    }

    /// Ends the stream (what a literal can still match at its end is reported then).
    func close(_ scratch: HyperscanScratch) -> Int {
        guard let s = stream else { return 0 }
        stream = nil
        scratch.sink.pointee.count = 0
        chs_close_stream(s, scratch.space, recordHit, scratch.sink)
        return scratch.sink.pointee.count
    }
}

/// Where a scan's pattern ids go: `ids[0 ..< count]`.
struct HyperscanHits {
    var ids: UnsafeMutablePointer<Int32>
    var count: Int
}

/// Hyperscan's handler: records the id (the database is single-match, so `ids` holds at
/// most `patternCount` of them) and goes on.
private let recordHit: chs_match_handler = { id, _, _, _, context in
    let sink = context!.assumingMemoryBound(to: HyperscanHits.self)
    sink.pointee.ids[sink.pointee.count] = Int32(bitPattern: id)
    sink.pointee.count &+= 1
    return 0
}

/// One thread's Hyperscan scratch, grown to serve every database of an engine, and the
/// buffer a scan's pattern ids land in. Not shared between threads.
final class HyperscanScratch {
    var space: UnsafeMutableRawPointer?
    let sink: UnsafeMutablePointer<HyperscanHits>
    let capacity: Int

    /// Scratch for `databases` (Hyperscan allocates it; failing means memory ran out).
    init(for databases: [HyperscanDatabase]) {
        capacity = max(1, databases.map(\.patternCount).max() ?? 1)
        sink = .allocate(capacity: 1)
        sink.initialize(to: HyperscanHits(ids: .allocate(capacity: capacity), count: 0))
        for db in databases {
            guard chs_grow_scratch(db.database, &space) == 0 else { fatalError("Hyperscan could not allocate its scratch space") }
        }
    }

    deinit {
        chs_free_scratch(space)
        sink.pointee.ids.deallocate()
        sink.deallocate()
    }

    /// Bytes Hyperscan's scratch takes.
    var memoryFootprint: Int { chs_scratch_size(space) }
}

/// Compiled Hyperscan databases kept on disk, one file per set of fast patterns, so a
/// rule set loads without compiling again: the file is named by a 64-bit FNV-1a hash of
/// the patterns and Hyperscan's version, and holds the serialized database (Hyperscan
/// checks it fits this CPU when it is read back; one that does not is compiled again).
/// Files are written whole and renamed into place, so concurrent loads never read half
/// of one.
public struct HyperscanCache: Sendable {
    public let directory: String

    /// The default place: `$XDG_CACHE_HOME/flexids/hyperscan`, else `~/.cache/flexids/hyperscan`.
    public static var defaultDirectory: String {
        let env = ProcessInfo.processInfo.environment
        let base = env["XDG_CACHE_HOME"].flatMap { $0.isEmpty ? nil : $0 } ?? (NSHomeDirectory() + "/.cache")
        return base + "/flexids/hyperscan"
    }

    public init(directory: String = HyperscanCache.defaultDirectory) {
        self.directory = directory
    }

    func path(_ patterns: [[UInt8]]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ b: UInt8) { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        for b in String(cString: chs_version()).utf8 { mix(b) }
        for p in patterns {
            for k in 0..<4 { mix(UInt8(truncatingIfNeeded: p.count >> (8 * k))) }
            for b in p { mix(b) }
        }
        return directory + "/" + String(h, radix: 16) + ".hsdb"
    }

    func load(_ patterns: [[UInt8]]) -> Data? { FileManager.default.contents(atPath: path(patterns)) }

    /// Writes the database (a failure only means the next load compiles again).
    func store(_ patterns: [[UInt8]], _ bytes: UnsafeRawBufferPointer) {
        let target = path(patterns)
        let temporary = target + ".\(getpid()).tmp"
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try Data(bytes).write(to: URL(fileURLWithPath: temporary))
            guard rename(temporary, target) == 0 else { unlink(temporary); return }
        } catch {
            unlink(temporary)
        }
    }
}
