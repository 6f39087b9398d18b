import CFlexSys
#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Registered log segments of one core (thesis 5.1's custom DMA): fixed-size memory the
/// pipeline appends payload ranges into, so the core finds items already in place.
///
/// Records are a 4-byte little-endian length followed by the bytes, padded to 8
/// (`stride(forRecordOf:)`). The pipeline fills one segment at a time; when a record
/// does not fit it posts a "segment full" notice and moves to the next segment, but
/// only if the core has recycled it. Segment ownership is handed over by an atomic flag
/// per segment: armed (the pipeline may write) or held (the core reads it). The core
/// may recycle a slot with different memory (an application that keeps what the
/// pipeline wrote, as flexkvs keeps items, registers a fresh segment instead).
public final class LogSegments: @unchecked Sendable {
    public let segmentSize: Int
    public let segmentCount: Int
    /// Memory this instance allocated (nil: the application registered its own).
    let memory: UnsafeMutableRawPointer?
    /// Start of each slot's segment; written by the core only while the slot is held.
    let bases: UnsafeMutablePointer<UnsafeMutableRawPointer>
    let armed: UnsafeMutablePointer<Atomic<UInt8>>
    /// Pipeline-side cursor: current segment and write offset in it.
    var current = 0
    var offset = 0

    /// Registers `count` segments of `size` bytes (size a multiple of 64).
    public init(count: Int = 4, size: Int = 1 << 20) {
        precondition(count >= 1 && size >= 64 && size % 64 == 0, "log segments: count >= 1, size a multiple of 64")
        segmentCount = count
        segmentSize = size
        guard let m = cflex_region_alloc(count * size, 1) else { fatalError("LogSegments: out of memory") }
        memory = m
        bases = .allocate(capacity: count)
        for i in 0..<count { (bases + i).initialize(to: m + i * size) }
        armed = .allocate(capacity: count)
        for i in 0..<count { (armed + i).initialize(to: Atomic(1)) }
    }

    /// Registers memory the application owns: `segments` are `size` bytes each, 8-byte
    /// aligned, and stay valid until recycled with other memory or this instance dies.
    public init(segments: [UnsafeMutableRawPointer], size: Int) {
        precondition(!segments.isEmpty && size >= 64 && size % 64 == 0, "log segments: at least one, size a multiple of 64")
        segmentCount = segments.count
        segmentSize = size
        memory = nil
        bases = .allocate(capacity: segments.count)
        bases.initialize(from: segments, count: segments.count)
        armed = .allocate(capacity: segments.count)
        for i in 0..<segments.count { (armed + i).initialize(to: Atomic(1)) }
    }

    deinit {
        armed.deinitialize(count: segmentCount)
        armed.deallocate()
        bases.deallocate()
        if let memory { cflex_region_free(memory, segmentCount * segmentSize) }
    }

    /// Start of segment `i`.
    public func segment(_ i: Int) -> UnsafeMutableRawPointer { bases[i] }

    /// The slot whose segment holds `pointer`, and the offset of `pointer` in it.
    public func locate(_ pointer: UnsafeRawPointer) -> (slot: Int, offset: Int)? {
        for i in 0..<segmentCount {
            let o = pointer - UnsafeRawPointer(bases[i])
            if o >= 0 && o < segmentSize { return (i, o) }
        }
        return nil
    }

    /// Bytes a record of `count` payload bytes takes in a segment (length word, padding).
    @inline(__always) public static func stride(forRecordOf count: Int) -> Int { (4 &+ count &+ 7) & ~7 }

    /// The payload length of the record whose bytes start at `record`.
    @inline(__always) public static func recordLength(_ record: UnsafeRawPointer) -> Int {
        Int(UInt32(littleEndian: (record - 4).loadUnaligned(as: UInt32.self)))
    }

    /// Hands segment `i` back to the pipeline once the core is done with it, optionally
    /// with new memory in its place (`size` bytes, 8-byte aligned).
    public func recycle(_ i: Int, replacingWith segment: UnsafeMutableRawPointer? = nil) {
        if let segment { bases[i] = segment }
        armed[i].store(1, ordering: .releasing)
    }

    /// Whether segment `i` is the pipeline's to write.
    public func isArmed(_ i: Int) -> Bool { armed[i].load(ordering: .acquiring) == 1 }

    /// Result of an append, for the pipeline.
    public enum Append {
        /// Stored: the record's bytes are at `data` in segment `segment`. If `filled` is
        /// set, that segment was closed first with `used` bytes and must be announced.
        case stored(segment: Int, data: UnsafeMutableRawPointer, filled: (segment: Int, used: Int)?)
        /// No armed segment had room (or the record is larger than a segment).
        case unavailable(filled: (segment: Int, used: Int)?)
    }

    /// Appends `count` bytes from `bytes` (pipeline thread only).
    public func append(_ bytes: UnsafeRawPointer, count: Int) -> Append {
        let need = Self.stride(forRecordOf: count)
        guard need <= segmentSize else { return .unavailable(filled: nil) }
        var filled: (segment: Int, used: Int)? = nil
        if offset == 0 && !isArmed(current) { return .unavailable(filled: nil) }
        if offset &+ need > segmentSize {
            // Close this segment and hand it to the core; move on if the next is armed.
            filled = (current, offset)
            armed[current].store(0, ordering: .releasing)
            current = (current &+ 1) % segmentCount
            offset = 0
            guard isArmed(current) else { return .unavailable(filled: filled) }
        }
        let base = segment(current) + offset
        base.storeBytes(of: UInt32(count).littleEndian, as: UInt32.self)
        (base + 4).copyMemory(from: bytes, byteCount: count)
        offset &+= need
        return .stored(segment: current, data: base + 4, filled: filled)
    }

    /// Walks the records of a filled segment (`used` bytes), as a core would.
    public func forEachRecord(inSegment i: Int, used: Int, _ body: (UnsafeRawBufferPointer) -> Void) {
        var o = 0
        let base = UnsafeRawPointer(segment(i))
        while o + 4 <= used {
            let n = Int(UInt32(littleEndian: base.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
            body(UnsafeRawBufferPointer(start: base + o + 4, count: n))
            o += Self.stride(forRecordOf: n)
        }
    }
}
