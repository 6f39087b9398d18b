@testable import FlexIO
import Testing

/// The idle policy's decisions, on a clock the test drives (cycles).
@Suite struct CoreLoopTests {
    /// Work arriving more often than the spin window: idle rounds poll again until the
    /// window passes since the last work, then sleep.
    @Test func spinsWhileWorkArrivesOften() {
        let loop = CoreLoop(spinCycles: 100_000)
        var now: UInt64 = 1_000_000
        for _ in 0..<20 {
            loop.noteWork(at: now)
            now += 10_000
        }
        loop.idleSince = 0
        #expect(loop.keepsSpinning(at: now))
        #expect(loop.keepsSpinning(at: now + 90_000))
        #expect(!loop.keepsSpinning(at: now + 100_001), "the window passed: sleep")
    }

    /// Work a millisecond apart (1,000 requests/s at 2.5 GHz: 2.5 M cycles): every
    /// idle round sleeps at once; the first work seen spins nothing either.
    @Test func sleepsAtOnceWhenWorkIsRare() {
        let loop = CoreLoop(spinCycles: 100_000)
        #expect(!loop.keepsSpinning(at: 1), "no work seen yet")
        var now: UInt64 = 1_000_000
        for _ in 0..<20 {
            loop.noteWork(at: now)
            loop.idleSince = 0
            #expect(!loop.keepsSpinning(at: now + 1))
            now += 2_500_000
        }
        // A burst brings the average down within a few rounds, and spinning back.
        for _ in 0..<40 {
            loop.noteWork(at: now)
            now += 5_000
        }
        loop.idleSince = 0
        #expect(loop.keepsSpinning(at: now))
    }
}
