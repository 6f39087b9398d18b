#if canImport(Glibc)
import Glibc
#endif
import CFlexSys
import Synchronization

/// A thread that wakes on the core of a `CoreLoop` that goes to sleep often, so that
/// the loop's own wakeups cost less.
///
/// Why: on the virtual machines this project is measured on (KVM guests on a nested,
/// PVM hypervisor; `cpuidle` haltpoll with guest polling off) a thread's wakeup costs
/// less on a core where some thread woke within the last few milliseconds. One flexkvs
/// worker at 20,000 requests/s (`bash Scripts/kvs-wakeup.sh flexkvs 20000 tcp-binary`,
/// `FLEXKVS_ARGS=--no-warm-cores` for none): 14.6 to 15.0 us of server CPU per request
/// without a warmer, 11.0 to 11.3 us with (its own CPU included); the core's busy time
/// 18.0 to 18.3 against 13.8 to 14.3 us. A timer interrupt alone on that core (a
/// periodic timerfd, no thread woken) does not do it, nor does a thread woken on the
/// other core, nor one woken every 10 ms. memcached gets it from its LRU maintainer
/// thread, which wakes every 2.5 ms under that load.
///
/// Policy, one round per wake of the warmer's thread:
/// - The loop counts its sleeps (`noteSleep`; one that returned at once counts too) and
///   says which CPU it ran on.
/// - While the loop went to sleep at least `minimumRate` times a second since the last
///   round, the warmer sleeps `period`; else it doubles its sleep, up to `longestSleep`.
///   So an idle loop, and one at a low rate, where a warmer's wakeup costs about what it
///   saves, are left alone (`nextSleep`). A loop that sleeps after every round
///   (`sleepsAfterWork`) keeps it on in a closed loop too, 500 wakeups a second.
/// - Before it sleeps it moves to the CPU the loop last ran on, if it is not there.
/// - It runs in SCHED_IDLE, so it never preempts the loop (the effect is the same:
///   11.0 against 11.0 to 11.6 us in the measurement above).
///
/// Threading: `noteSleep` is called by the loop's thread only; `run` on the warmer's
/// own thread; `stop` from any. Relaxed atomics: the warmer only samples.
public final class CoreWarmer: Sendable {
    /// The warmer's sleep while its loop sleeps often (2 ms): under the few
    /// milliseconds the effect lasts (as good as 1 ms at 20k requests/s).
    public static let period: UInt64 = 2_000_000
    /// Its longest sleep (64 ms), while the loop wakes seldom: how late it notices a
    /// rising rate.
    public static let longestSleep: UInt64 = 64_000_000
    /// The loop's sleeps a second from which the warmer keeps the core warm (at 5,000
    /// requests/s it saved 2.5 to 4.5 us a request).
    public static let minimumRate: UInt64 = 4_000

    let loopSleeps = Atomic<UInt64>(0)
    let loopCPU = Atomic<Int32>(-1)
    let running = Atomic<Bool>(true)
    /// Rounds after which the warmer slept `period`: the core was kept warm for about
    /// `period` times this.
    public let warmRounds = Atomic<UInt64>(0)
    let stopSignal: WakeSet

    public init() throws {
        stopSignal = try WakeSet(count: 1)
    }

    /// The loop slept (the loop's thread only).
    @inline(__always)
    public func noteSleep() {
        loopSleeps.store(loopSleeps.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
        let cpu = cflex_current_cpu()
        if cpu != loopCPU.load(ordering: .relaxed) { loopCPU.store(cpu, ordering: .relaxed) }
    }

    /// The warmer's next sleep (ns) after one of `current` in which its loop slept
    /// `sleeps` times over `elapsed` ns, and whether it keeps the core warm. Exact for
    /// every input: the rate is compared in full width, the doubling saturates.
    public static func nextSleep(current: UInt64, sleeps: UInt64, elapsed: UInt64) -> (sleep: UInt64, warm: Bool) {
        let seen = sleeps.multipliedFullWidth(by: 1_000_000_000), needed = minimumRate.multipliedFullWidth(by: max(elapsed, 1))
        if (seen.high, seen.low) >= (needed.high, needed.low) { return (period, true) }
        return (current >= longestSleep / 2 ? longestSleep : max(current, period) * 2, false)
    }

    /// Runs the warmer's rounds until `stop` (on a thread of the caller's). A warmer
    /// may run again after it stopped; one `run` at a time.
    public func run() {
        _ = cflex_schedule_when_idle()  // never ahead of the loop: a wakeup while it runs waits
        let loop = CoreLoop(wakeups: stopSignal, member: 0, maximumSleep: .max)
        var seen = loopSleeps.load(ordering: .relaxed)
        var since = monotonicNanoseconds()
        var sleep = Self.period
        var refused: Int32 = -1  // a CPU the warmer may not move to (a cpuset's), until the loop moves
        loop.run(while: { running.load(ordering: .relaxed) }) {
            let count = loopSleeps.load(ordering: .relaxed), now = monotonicNanoseconds()
            let next = Self.nextSleep(current: sleep, sleeps: count &- seen, elapsed: now &- since)
            seen = count
            since = now
            sleep = next.sleep
            if next.warm {
                warmRounds.store(warmRounds.load(ordering: .relaxed) &+ 1, ordering: .relaxed)
                let cpu = loopCPU.load(ordering: .relaxed)
                if cpu >= 0 && cpu != refused && cpu != cflex_current_cpu() && cflex_pin_thread(cpu) != 0 { refused = cpu }
            }
            return CoreLoop.Round(work: 0, sleepLimit: sleep)
        }
        running.store(true, ordering: .relaxed)
    }

    /// Makes `run` return (at once, if it sleeps).
    public func stop() {
        running.store(false, ordering: .relaxed)
        stopSignal.wake(0)
    }
}
