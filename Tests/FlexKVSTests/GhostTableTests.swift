@testable import FlexKVS
import Testing

@Suite struct GhostTableTests {
    /// A hash other than `hash` that lands in the same slot.
    static func rival(of hash: UInt32, in table: GhostTable) -> UInt32 {
        var other = hash &+ 1
        while table.slot(other) != table.slot(hash) { other &+= 1 }
        return other
    }

    @Test func aGhostIsFoundOnceAndAnEmptyTableFindsNone() {
        let ghosts = GhostTable(capacity: 4096)
        #expect(ghosts.remove(42) == false)
        ghosts.insert(42)
        #expect(ghosts.remembered == 1)
        #expect(ghosts.remove(7) == false)
        #expect(ghosts.remove(42))
        #expect(ghosts.remembered == 0)
        #expect(ghosts.remove(42) == false)
        ghosts.insert(0)  // stored as 1: still found
        #expect(ghosts.remove(0))
    }

    /// A newer hash in a slot forgets the older one; the count of remembered slots
    /// stays exact, so an emptied table is skipped again.
    @Test func aSlotHoldsTheNewestHashAndTheCountStaysExact() {
        let ghosts = GhostTable(capacity: 4096)
        let first: UInt32 = 0xDEAD_BEEF
        let second = Self.rival(of: first, in: ghosts)
        ghosts.insert(first)
        ghosts.insert(second)
        ghosts.insert(second)
        #expect(ghosts.remembered == 1)
        #expect(ghosts.remove(first) == false)
        #expect(ghosts.remove(second))
        #expect(ghosts.remembered == 0)
        for h: UInt32 in 1...1_000 { ghosts.insert(h &* 2_654_435_761) }
        var found = 0
        for h: UInt32 in 1...1_000 where ghosts.remove(h &* 2_654_435_761) { found += 1 }
        #expect(found > 0)
        #expect(ghosts.remembered == 0)
    }
}
