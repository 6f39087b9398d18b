import FlexNIC
import Testing

/// `ReplyTable.valid` lets `invalidate` skip a table that holds no reply; these check
/// that a reply the table holds is never skipped, whatever installs, replacements and
/// invalidations came before.
@Suite struct ReplyTableTests {
    func lookup(_ table: ReplyTable, _ key: [UInt8], _ hash: UInt32) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: 64)
        let n = key.withUnsafeBytes { k in
            out.withUnsafeMutableBytes { table.lookup(hash: hash, key: k.baseAddress!, keyLength: k.count, into: $0.baseAddress!, room: 64) }
        }
        return n.map { Array(out[..<$0]) }
    }

    func install(_ table: ReplyTable, _ key: [UInt8], _ hash: UInt32, _ reply: [UInt8]) {
        key.withUnsafeBytes { k in reply.withUnsafeBytes { #expect(table.install(hash: hash, key: k, reply: $0, epoch: table.epoch.load(ordering: .acquiring))) } }
    }

    func invalidate(_ table: ReplyTable, _ key: [UInt8], _ hash: UInt32) {
        key.withUnsafeBytes { table.invalidate(hash: hash, key: $0) }
    }

    /// Four slots: hashes 2 and 6 share one.
    @Test func anInvalidatedKeyIsGoneWhateverTheTableHeldBefore() {
        let table = ReplyTable(slots: 4)
        let a: [UInt8] = Array("alpha".utf8), b: [UInt8] = Array("beta".utf8), c: [UInt8] = Array("gamma".utf8)
        invalidate(table, a, 1)  // an empty table: nothing to drop
        #expect(table.invalidations.load(ordering: .relaxed) == 0)
        install(table, a, 1, [1])
        install(table, b, 2, [2])
        #expect(lookup(table, a, 1) == [1] && lookup(table, b, 2) == [2])
        invalidate(table, a, 1)
        #expect(lookup(table, a, 1) == nil && lookup(table, b, 2) == [2])
        // c displaces b from slot 2 (hash 6): the count stays one valid slot, and
        // invalidating b, no longer held, drops nothing.
        install(table, c, 6, [3])
        invalidate(table, b, 2)
        #expect(lookup(table, c, 6) == [3] && table.invalidations.load(ordering: .relaxed) == 1)
        install(table, a, 1, [4])
        table.invalidateAll()
        #expect(lookup(table, a, 1) == nil && lookup(table, c, 6) == nil)
        // After the flush the table is empty again, and a new install is seen.
        install(table, b, 2, [5])
        invalidate(table, b, 2)
        #expect(lookup(table, b, 2) == nil && table.invalidations.load(ordering: .relaxed) == 2)
    }

    /// Seeded random operations against a model: after every invalidation the key is
    /// gone, and every key the model holds is answered.
    @Test func seededOperationsAgreeWithAModel() {
        let table = ReplyTable(slots: 8)
        var model: [UInt32: UInt8] = [:]  // slot -> key index held
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int { state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407; return Int(state >> 33) }
        let keys = (0..<24).map { [UInt8]("key\($0)".utf8) }
        func hash(_ k: Int) -> UInt32 { UInt32(k) &* 3 }
        for _ in 0..<20_000 {
            let k = next() % keys.count, slot = hash(k) & 7
            switch next() % 3 {
            case 0:
                install(table, keys[k], hash(k), [UInt8(k)])
                model[slot] = UInt8(k)
            case 1:
                invalidate(table, keys[k], hash(k))
                if model[slot] == UInt8(k) { model[slot] = nil }
                #expect(lookup(table, keys[k], hash(k)) == nil)
            default:
                if next() % 50 == 0 { table.invalidateAll(); model = [:] }
            }
            for (slot, held) in model {
                #expect(lookup(table, keys[Int(held)], hash(Int(held))) == [held], "slot \(slot)")
            }
        }
    }
}
