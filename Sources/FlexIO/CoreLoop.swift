#if canImport(Glibc)
import Glibc
#endif
import CFlexSys
import Synchronization

/// The loop of a thread that owns a core, the one loop every such thread runs: a KVS
/// worker, a Storm worker, demultiplexer and multiplexer, an IDS inspector, a steering
/// emulator, flexbench's reflector. The owner brings its phases as one `round`
/// closure; the loop brings the idle policy, the same everywhere:
///
/// 1. After a round that found work, go round again.
/// 2. After one that found none, keep polling while work arrived within the last
///    `spinCycles` (a burst is likely on its way, and a sleep plus a wakeup cost more
///    than the wait), but only while work has been arriving that often: the loop keeps
///    a moving average of the time between rounds that found work, and spins only when
///    it is below `spinCycles`. At a low rate (1,000 requests/s: a millisecond apart)
///    it sleeps at once instead of burning 40 us per request. With no core to spare, no
///    spinning: a spinning thread would take the core another thread, or the client,
///    needs (`spinCycles(threads:)`).
/// 3. Then the owner may do housekeeping (`whenIdle`); if it did some, go round again.
/// 4. Then sleep in one `ppoll` on the thread's `WakeSet` member and its ports' rx
///    queues until one turns readable, the round's own limit passes
///    (`Round.sleepLimit`: a paced spout's next tuple), or `maximumSleep` does (how late
///    a stop is seen). A port without a readiness descriptor (DPDK) cannot be slept
///    on: the loop naps at most `polledPortNap` and looks again, or, when that is 0,
///    keeps polling as a poll-mode driver does.
///
/// Invariants: an idle round allocates nothing (the descriptors are gathered once);
/// the thread's wakeup member is drained after every sleep, and producers signal
/// after they enqueue, so no wakeup is lost: one sent while the thread ran makes its
/// next sleep return at once. Single-threaded: one loop per thread.
public final class CoreLoop {
    /// What one round did.
    public struct Round: Sendable {
        /// Items handled (packets, requests, tuples); 0 if it found nothing to do.
        public var work: Int
        /// The longest the loop may sleep before the next round, in nanoseconds.
        /// Limits under `minimumSleep` yield the core instead of sleeping.
        public var sleepLimit: UInt64
        /// The owner is done: `run` returns.
        public var stop: Bool

        public init(work: Int, sleepLimit: UInt64 = .max, stop: Bool = false) {
            self.work = work
            self.sleepLimit = sleepLimit
            self.stop = stop
        }

        public static let stop = Round(work: 0, stop: true)
    }

    /// Several loops watching one port whose rx queues any of them may drain (a Storm
    /// node's workers): one idle loop at a time watches the port, the others sleep on
    /// their wakeups only, so one arrival wakes one thread, not all.
    public final class SharedWatch: Sendable {
        let holder = Atomic<Int>(-1)
        public init() {}
    }

    /// Cycles of spinning before a sleep: about 40 us (100,000 cycles) when `threads`
    /// busy threads leave a core spare, else none.
    public static func spinCycles(threads: Int, cores: Int = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) -> UInt64 {
        threads < cores ? 100_000 : 0
    }

    /// Sleeps shorter than this (ns) yield the core instead: poll's granularity and a
    /// wakeup's cost make them pointless.
    public static let minimumSleep: UInt64 = 20_000

    public let spinCycles: UInt64
    public let maximumSleep: UInt64
    public let polledPortNap: UInt64
    let wakeups: WakeSet?
    let member: Int
    let shared: SharedWatch?
    /// The wakeup descriptor first (if any), then the ports' readiness descriptors.
    let descriptors: UnsafeMutablePointer<pollfd>
    let wakeupCount: Int
    let descriptorCount: Int
    let watchesPolledPort: Bool
    var idleSince: UInt64 = 0
    /// When the last round with work ended, and the moving average (1/8 weight) of the
    /// time between such rounds, in cycles; it starts high: no spinning before work has
    /// been seen arriving often.
    var lastWork: UInt64 = 0
    var averageGap: UInt64 = .max

    /// A loop that sleeps on `ports` (port, rx queue) and on member `member` of
    /// `wakeups`. `maximumSleep` and `polledPortNap` are nanoseconds.
    public init(ports: [(port: any PacketPort, queue: Int)] = [], wakeups: WakeSet? = nil, member: Int = 0,
                shared: SharedWatch? = nil, spinCycles: UInt64 = 0,
                maximumSleep: UInt64 = 1_000_000, polledPortNap: UInt64 = 50_000) {
        self.spinCycles = spinCycles
        self.maximumSleep = maximumSleep
        self.polledPortNap = polledPortNap
        self.wakeups = wakeups
        self.member = member
        self.shared = shared
        var fds: [Int32] = wakeups.map { [$0.descriptor(member)] } ?? []
        wakeupCount = fds.count
        var polled = false
        for (port, queue) in ports {
            if let fd = port.readinessDescriptor(queue: queue) { fds.append(fd) } else { polled = true }
        }
        watchesPolledPort = polled
        descriptorCount = fds.count
        descriptors = .allocate(capacity: max(1, fds.count))
        for (i, fd) in fds.enumerated() { descriptors[i] = pollfd(fd: fd, events: Int16(POLLIN), revents: 0) }
    }

    deinit { descriptors.deallocate() }

    /// Runs rounds until `running` reads false or a round says stop.
    public func run(while running: () -> Bool, _ round: () -> Round, whenIdle: () -> Bool = { false }) {
        while running() {
            let r = round()
            if r.stop { return }
            settle(after: r, whenIdle: whenIdle)
        }
    }

    /// Steps 1 to 4 after one round (for an owner that drives its rounds itself).
    @inline(__always)
    public func settle(after r: Round, whenIdle: () -> Bool = { false }) {
        if r.work > 0 {
            if spinCycles > 0 { noteWork(at: cflex_rdtsc()) }
            idleSince = 0
            return
        }
        if spinCycles > 0 && keepsSpinning(at: cflex_rdtsc()) { return }
        if whenIdle() { return }
        sleep(atMost: r.sleepLimit)
    }

    /// Takes in a round that found work, at `now` (cycles).
    @inline(__always)
    func noteWork(at now: UInt64) {
        if lastWork != 0 {
            let gap = now &- lastWork
            averageGap = averageGap == .max ? gap : averageGap &- averageGap / 8 &+ gap / 8
        }
        lastWork = now
    }

    /// Whether an idle round at `now` (cycles) should poll again rather than sleep:
    /// work has been arriving within `spinCycles` of itself, and this idle spell is
    /// younger than that.
    @inline(__always)
    func keepsSpinning(at now: UInt64) -> Bool {
        guard averageGap < spinCycles else { return false }
        if idleSince == 0 { idleSince = now }
        return now &- idleSince < spinCycles
    }

    /// Sleeps until a descriptor turns readable or `limit` (ns, capped as the type
    /// says) passes, then drains the wakeup member. Step 4 alone, for an owner that
    /// must wait in the middle of a round (a sender whose window is full).
    public func sleep(atMost limit: UInt64) {
        var ns = min(limit, maximumSleep)
        var watched = descriptorCount
        var holdsTurn = false
        if let shared, descriptorCount > wakeupCount {
            holdsTurn = shared.holder.compareExchange(expected: -1, desired: member, ordering: .acquiring).exchanged
            if !holdsTurn { watched = wakeupCount }
        }
        if watchesPolledPort && (shared == nil || holdsTurn) {
            if polledPortNap == 0 { return }
            ns = min(ns, polledPortNap)
        }
        if ns < Self.minimumSleep {
            sched_yield()
        } else {
            _ = cflex_poll_ns(descriptors, UInt32(watched), ns)
        }
        if holdsTurn { shared!.holder.store(-1, ordering: .releasing) }
        if wakeupCount > 0 { wakeups!.drain(member) }
    }
}
