@testable import FlexKVS
import Testing

/// The worker's sessions by flow id (queue, generation, slot), checked against a
/// dictionary (the structure it replaced) under seeded opens, closes and slot reuse.
/// One difference is by design, and the model has it too: a new connection in a slot
/// replaces the old connection's session (the old one is closed, its FIN not yet seen).
@Suite struct SessionTableTests {
    func flow(queue: Int, generation: Int, slot: Int) -> UInt32 {
        UInt32(queue) << 28 | UInt32(generation & 0xFFF) << 16 | UInt32(slot)
    }

    @Test func aReusedSlotFindsOnlyItsNewConnection() {
        var table = SessionTable()
        let old = flow(queue: 3, generation: 1, slot: 70), new = flow(queue: 3, generation: 2, slot: 70)
        let a = Session(), b = Session()
        table[old] = a
        #expect(table[old] === a && table[new] == nil && table.count == 1)
        table[new] = b  // the slot was reused before the old connection's FIN was seen
        #expect(table[new] === b && table[old] == nil && table.count == 1)
        #expect(table.removeValue(forKey: old) == nil && table.count == 1)
        #expect(table.removeValue(forKey: new) === b && table.count == 0 && table[new] == nil)
        // Another queue's flow with the same slot and generation is another connection.
        table[flow(queue: 0, generation: 2, slot: 70)] = a
        #expect(table[new] == nil && table.count == 1)
        // The first flow id of all (an empty entry's id) and the last slot of a queue.
        let first = flow(queue: 0, generation: 0, slot: 0), last = flow(queue: 15, generation: 0xFFF, slot: 0xFFFF)
        #expect(table[first] == nil)
        table[first] = b
        table[last] = b
        #expect(table[first] === b && table[last] === b && table.count == 3)
        #expect(table.removeValue(forKey: first) === b && table[first] == nil && table.count == 2)
    }

    @Test func seededOpensAndClosesAgreeWithADictionary() {
        var table = SessionTable()
        var model: [UInt32: Session] = [:]
        var state: UInt64 = 42
        func next(_ n: Int) -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(state >> 33) % n
        }
        // The generation each (queue, slot) is at: a new connection there takes the next.
        var generations: [Int: Int] = [:]
        for _ in 0..<50_000 {
            let q = next(3), slot = next(200), key = q << 16 | slot
            let current = flow(queue: q, generation: generations[key, default: 0], slot: slot)
            switch next(4) {
            case 0:  // a new connection in the slot (the old one's session, if any, goes)
                generations[key, default: 0] += 1
                let f = flow(queue: q, generation: generations[key]!, slot: slot)
                let s = Session()
                model[current] = nil
                model[f] = s
                table[f] = s
            case 1:
                #expect(table.removeValue(forKey: current) === model.removeValue(forKey: current))
            default:
                #expect(table[current] === model[current])
            }
            #expect(table.count == model.count)
        }
    }
}
