/// One FIFO log of items (thesis 5.1): items are appended to an active segment; a
/// segment that cannot take the next item is closed and joins the list of full
/// segments, oldest first. A partition keeps two (`Partition`: probation and main) and
/// decides whether a log may open another segment (its quota is theirs together).
struct ItemLog {
    let pool: SegmentPool
    var active = -1
    var offset = 0
    /// Full segments, oldest first.
    var full: [Int] = []
    /// Segments that have joined `full` so far (compaction looks again when it grows).
    var closed = 0
    /// Segments registered with the pipeline for placed items (`--steering dma`); they
    /// join `full` when the pipeline has filled them.
    var placing = 0

    init(pool: SegmentPool, expectedSegments: Int) {
        self.pool = pool
        full.reserveCapacity(expectedSegments)
    }

    var segmentsHeld: Int { full.count + placing + (active >= 0 ? 1 : 0) }

    @inline(__always) static func segment(of ref: ItemRef) -> Int { Int(ref >> 32) - 1 }

    /// Room for a `size`-byte record, or nil when a segment is needed and `mayOpen` is
    /// false (the partition is at its quota) or the pool is empty (the caller evicts and
    /// retries).
    mutating func allocate(_ size: Int, mayOpen: Bool) -> ItemRef? {
        precondition(size <= pool.segmentSize)
        if active >= 0 && offset + size <= pool.segmentSize {
            let ref = ItemRef(active + 1) << 32 | ItemRef(offset)
            offset += size
            return ref
        }
        guard mayOpen, let s = pool.take() else { return nil }
        closeActive()
        active = s
        offset = size
        return ItemRef(s + 1) << 32
    }

    /// Marks the end of the active segment's records and moves it to the full list.
    mutating func closeActive() {
        guard active >= 0 else { return }
        if offset + 4 <= pool.segmentSize {
            pool.base(of: active).storeBytes(of: UInt32(0), toByteOffset: offset, as: UInt32.self)
        }
        pool.addFreed(pool.segmentSize - offset, segment: active)  // the unused tail
        full.append(active)
        closed &+= 1
        active = -1
    }

    /// A segment for the pipeline to place items into, or nil when `mayOpen` is false
    /// or the pool is empty (the caller evicts and retries).
    mutating func takeForPlacing(mayOpen: Bool) -> Int? {
        guard mayOpen, let s = pool.take() else { return nil }
        placing += 1
        return s
    }

    /// Takes back a segment the pipeline filled to `used` bytes (every record in it
    /// already an item, live or dead): it joins the full segments as the newest.
    mutating func adoptPlaced(_ s: Int, used: Int) {
        placing -= 1
        if used + 4 <= pool.segmentSize {
            pool.base(of: s).storeBytes(of: UInt32(0), toByteOffset: used, as: UInt32.self)
        }
        pool.addFreed(pool.segmentSize - used, segment: s)
        full.append(s)
        closed &+= 1
    }

    /// Removes and returns the oldest full segment, for eviction.
    mutating func takeOldest() -> Int? { full.isEmpty ? nil : full.removeFirst() }

    /// Removes full segment `s` from the list (compaction picks any segment).
    mutating func take(_ s: Int) { full.removeAll { $0 == s } }

    /// Calls `body` with every record of segment `s` (live or dead).
    func forEachRecord(in s: Int, _ body: (ItemRef, ItemView) -> Void) {
        let base = pool.base(of: s)
        var o = 0
        let end = s == active ? offset : pool.segmentSize
        while o + ItemView.headerSize <= end {
            let item = ItemView(base + o)
            let size = item.recordSize
            if size == 0 { break }
            body(ItemRef(s + 1) << 32 | ItemRef(o), item)
            o += size
        }
    }
}
