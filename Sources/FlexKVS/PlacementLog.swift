import FlexNIC

/// A core's side of the log segments one pipeline places items into for one partition
/// (`--steering dma`, thesis 5.1's custom DMA). The segments are the partition's own
/// item memory: the pipeline appends a binary SET's bytes so that, with the record's
/// length word and the UDP frame header's last 4 bytes, the key starts 40 bytes in,
/// exactly where an item's key goes. The core then only writes the item header over
/// the request header and links the item; key and value are never copied.
///
/// Invariant: in each slot's segment every record before `checked[slot]` is an item,
/// live or dead. Records arrive in order on one ring; one whose descriptor a full ring
/// dropped never arrives, and the next record (or the segment-full notice) turns the
/// records it skipped into dead items, so segment walks stay sound.
///
/// Only the partition's owner calls this, under the partition's lock.
final class PlacementLog {
    let segments: LogSegments
    let partition: Partition
    /// The partition's store's pool, item size limit and clock, held here: read
    /// through the partition, each cost a retain and a release per SET.
    let pool: SegmentPool
    let maxItemSize: Int
    let clock: ServerClock
    /// Bytes of the UDP frame header the pipeline copies before the binary header, so
    /// that length word + prefix + binary header + SET extras = an item header.
    static let recordPrefix = ItemView.headerSize - 4 - BinaryProtocol.headerSize - setExtras
    static let setExtras = 8
    /// Where the binary request header lies, from the item's base.
    static let requestOffset = 4 + recordPrefix
    var checked: [Int]
    /// Slots handed back full that could not get a new segment yet.
    var waiting: [Int] = []
    /// SETs stored where the pipeline placed them.
    var placed: UInt64 = 0
    /// Records whose descriptor never arrived (dropped at a full ring).
    var lost: UInt64 = 0
    /// Segments filled by the pipeline and taken into the item log.
    var adopted: UInt64 = 0

    /// Registers `count` segments of `partition` (evicting its oldest if need be).
    init(partition: Partition, count: Int) throws {
        self.partition = partition
        let pool = partition.store.pool
        self.pool = pool
        maxItemSize = partition.store.maxItemSize
        clock = partition.store.clock
        let bases = try (0..<count).map { _ in
            guard let s = partition.withLock({ $0.segmentForPlacing() }) else {
                throw KVSServer.ConfigurationError("not enough memory to register \(count) placing segments per partition; raise -m")
            }
            return pool.base(of: s)
        }
        segments = LogSegments(segments: bases, size: pool.segmentSize)
        checked = Array(repeating: 0, count: count)
    }

    /// Where a placed record lies as an item: its reference, its base (the record's
    /// length word) and its stride.
    struct Placed {
        var ref: ItemRef
        var base: UnsafeMutableRawPointer
        var recordLength: Int
        var size: Int
    }

    /// The item-to-be at `record` (a `logRecord` descriptor's record), after turning
    /// any records lost before it into dead items. Nil if `record` is not ours.
    func accept(_ record: UnsafeMutableRawPointer) -> Placed? {
        guard let (slot, offset) = segments.locate(record), offset >= 4 else { return nil }
        let start = offset - 4
        retireLost(slot: slot, upTo: start)
        let length = LogSegments.recordLength(record)
        let size = LogSegments.stride(forRecordOf: length)
        checked[slot] = start + size
        let segment = pool.segment(containing: segments.segment(slot))
        return Placed(ref: ItemRef(segment + 1) << 32 | ItemRef(start), base: record - 4, recordLength: length, size: size)
    }

    /// A binary SET the core stored where it lay.
    struct StoredSet {
        var cas: UInt64
        var opcode: UInt8
        /// To echo back.
        var opaque: UInt32
    }

    /// Stores the binary SET placed at `p` as an item; or, if it is not a plain SET of
    /// sound lengths (a CAS, a bad length, too large), turns the record into a dead item
    /// and returns nil so that the caller serves the frame the ordinary way.
    ///
    /// The pipeline only places requests whose key lies inside the datagram, so the
    /// request header and the extras are there to read.
    func storeSet(_ p: Placed, hash: UInt32) -> StoredSet? {
        let r = UnsafeRawBufferPointer(start: p.base + Self.requestOffset, count: p.recordLength - Self.recordPrefix)
        let keyLength = Int(BinaryProtocol.be16(r, 2)), body = Int(BinaryProtocol.be32(r, 8))
        let valueLength = body - Self.setExtras - keyLength
        guard r[0] == BinaryProtocol.requestMagic, r[4] == Self.setExtras, r.count == BinaryProtocol.headerSize + body,
              (1...TextProtocol.maxKeyLength).contains(keyLength), valueLength >= 0,
              valueLength <= maxItemSize, BinaryProtocol.be64(r, 16) == 0  // no CAS
        else {
            partition.retirePlaced(p.ref, size: p.size)
            return nil
        }
        // Read before the item header overwrites the request header and extras.
        let opcode = r[1], opaque = BinaryProtocol.be32(r, 12)
        let flags = BinaryProtocol.be32(r, BinaryProtocol.headerSize), exptime = BinaryProtocol.be32(r, BinaryProtocol.headerSize + 4)
        let unique = partition.storePlaced(p.ref, keyLength: keyLength, valueLength: valueLength, hash: hash,
                                           flags: flags, expiry: clock.expiry(Int64(exptime)))
        placed &+= 1
        return StoredSet(cas: unique, opcode: opcode, opaque: opaque)
    }

    func retireLost(slot: Int, upTo end: Int) {
        let base = segments.segment(slot)
        let segment = pool.segment(containing: base)
        var o = checked[slot]
        while o < end {
            let size = LogSegments.stride(forRecordOf: LogSegments.recordLength(base + o + 4))
            partition.retirePlaced(ItemRef(segment + 1) << 32 | ItemRef(o), size: size)
            lost &+= 1
            o += size
        }
        checked[slot] = end
    }

    /// The pipeline closed `slot` at `used` bytes: the segment joins the partition's
    /// full segments and a fresh one takes its place (later, if memory is short).
    func filled(slot: Int, used: Int) {
        retireLost(slot: slot, upTo: used)
        partition.adoptPlaced(pool.segment(containing: segments.segment(slot)), used: used)
        adopted &+= 1
        waiting.append(slot)
        refill()
    }

    /// Registers fresh segments for waiting slots while memory allows.
    func refill() {
        while let slot = waiting.last, let s = partition.segmentForPlacing() {
            waiting.removeLast()
            checked[slot] = 0
            segments.recycle(slot, replacingWith: pool.base(of: s))
        }
    }
}
