import CFlexSys

/// How a loop that owns a core waits when a round found nothing to do, the same for
/// every such loop: it keeps polling while work arrived recently (`spinCycles` since
/// the last busy round: a burst is likely on its way, and a sleep and a wakeup cost
/// more than the wait), then sleeps until woken (`waitForAny`, a `WakeSet`) or a
/// timeout. With no spare core it does not spin at all: a spinning thread would take
/// the core another thread (or the client) needs.
public struct IdlePolicy: Sendable {
    public let spinCycles: UInt64
    var idleSince: UInt64 = 0

    public init(spinCycles: UInt64) { self.spinCycles = spinCycles }

    /// Spins about 40 us (100,000 cycles) when `threads` leave a core spare, else not.
    public static func forThreads(_ threads: Int, cores: Int) -> IdlePolicy {
        IdlePolicy(spinCycles: threads < cores ? 100_000 : 0)
    }

    /// After a round that handled `work` items: whether the loop should sleep now.
    @inline(__always)
    public mutating func shouldSleep(afterWork work: Int) -> Bool {
        if work > 0 {
            idleSince = 0
            return false
        }
        guard spinCycles > 0 else { return true }
        let now = cflex_rdtsc()
        if idleSince == 0 { idleSince = now }
        return now &- idleSince >= spinCycles
    }
}
