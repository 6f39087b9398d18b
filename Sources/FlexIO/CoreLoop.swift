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
/// 4. Then sleep in one `epoll_pwait2` on the thread's `WakeSet` member and its ports'
///    rx queues (an epoll set of the loop's, registered once) until one turns readable,
///    the round's own limit passes (`Round.sleepLimit`: a paced spout's next tuple), or
///    `maximumSleep` does (how late a stop is seen, for an owner that does not wake its
///    loops to stop). With neither (`.max`), the wait arms no timer: on a virtual
///    machine arming and cancelling one costs about a microsecond per sleep, which at
///    20k wakeups a second is about 7 % of a request's whole cost. A port without a
///    readiness descriptor (DPDK) cannot be slept
///    on: the loop naps at most `polledPortNap` and looks again, or, when that is 0,
///    keeps polling as a poll-mode driver does; its socket ports are then looked at
///    only every `socketCheckCycles` (one zero-timeout wait for all of them, not an
///    empty receive system call per round: a DPDK worker's TCP port).
///
/// Readiness: after a sleep, `isReady(port:)` says which ports' descriptors turned
/// readable (a port without one always is), so a round receives only from those: one
/// wait answered for all of them, instead of one empty receive system call per idle
/// port. After a round that did not sleep, every port is ready. Owners that ignore it
/// lose nothing.
///
/// A borrowed event set (`borrowsEventSet`): a port that waits on an epoll set of its
/// own (a TCP port's connections) may lend it (`PacketPort.lendableEventSet`); the loop
/// then adds its descriptors to that set and sleeps on it, and hands the port the
/// events that are the port's (`deliverEvents`), so a wakeup for a connection is one
/// system call, not a wait on the loop's set and then one on the port's. A round that
/// goes on without sleeping learns readiness from one zero-timeout wait on that set,
/// which also stands in for the port's own: an idle port costs no empty receive while
/// another is busy. Only for a loop that is its queues' only reader (not with
/// `shared`).
///
/// With `sleepsAfterWork` (an owner whose ports are all sockets, at a rate too low to
/// spin), a round that found work is followed by the sleep, not by another round: the
/// sleep returns at once if a descriptor is readable, so it is the check a further
/// round would make, in one system call. An owner that uses readiness, or sleeps after
/// work, must set `Round.hasMore` whenever it holds work no descriptor shows (a ring it
/// fed itself, frames a port keeps for its next receive): the loop then goes round
/// again at once.
///
/// Invariants: an idle round allocates nothing (the descriptors are gathered once);
/// the thread's wakeup member is drained after every sleep it ended (and after a yield),
/// and producers signal after they enqueue, so no wakeup is lost: one sent while the
/// thread ran makes its next sleep return at once. Single-threaded: one loop per thread.
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
        /// The owner holds work that no descriptor shows: go round again at once, with
        /// every port ready, whatever the round found.
        public var hasMore: Bool

        public init(work: Int, sleepLimit: UInt64 = .max, stop: Bool = false, hasMore: Bool = false) {
            self.work = work
            self.sleepLimit = sleepLimit
            self.stop = stop
            self.hasMore = hasMore
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

    /// How often a loop that never sleeps (a poll-mode port, `polledPortNap` 0) looks
    /// at its socket ports: about 100 us.
    public static let socketCheckCycles: UInt64 = 250_000

    public let spinCycles: UInt64
    public let maximumSleep: UInt64
    public let polledPortNap: UInt64
    public let sleepsAfterWork: Bool
    /// Told of every sleep (see `CoreWarmer`).
    let warmer: CoreWarmer?
    let wakeups: WakeSet?
    let member: Int
    let shared: SharedWatch?
    /// The wakeup descriptor first (if any), then the ports' readiness descriptors.
    let descriptors: UnsafeMutablePointer<pollfd>
    let wakeupCount: Int
    let descriptorCount: Int
    let watchesPolledPort: Bool
    /// An epoll set holding `descriptors`, each under its index tagged as a loop token
    /// (-1: none, or it could not be made; the loop then sleeps in `ppoll`), and what a
    /// wait returns. Borrowed from `lender` (then not closed here), or the loop's own.
    let eventSet: Int32
    let lender: (port: any PacketPort, queue: Int, index: Int)?
    let tokens: UnsafeMutablePointer<UInt64>
    let masks: UnsafeMutablePointer<UInt32>
    static let eventCapacity = 64
    /// Per descriptor, the port (index in `init`'s list) it belongs to; -1 for the wakeup.
    let descriptorPorts: [Int]
    /// Bit i: port i may have frames (see Readiness); the ports without a descriptor,
    /// and every port.
    var readyPorts: UInt64
    let polledPorts: UInt64
    let allPorts: UInt64
    var idleSince: UInt64 = 0
    /// When a loop that never sleeps last looked at its socket ports (cycles).
    var lastSocketCheck: UInt64 = 0
    /// When the last round with work ended, and the moving average (1/8 weight) of the
    /// time between such rounds, in cycles; it starts high: no spinning before work has
    /// been seen arriving often.
    var lastWork: UInt64 = 0
    var averageGap: UInt64 = .max

    /// A loop that sleeps on `ports` (port, rx queue) and on member `member` of
    /// `wakeups`. `maximumSleep` and `polledPortNap` are nanoseconds; a `maximumSleep`
    /// of `.max` sleeps until a descriptor or the wakeup member says so (the owner
    /// must then wake the loop to stop it). With `borrowsEventSet`, the first port that
    /// lends its event set is waited on through it (see A borrowed event set). A
    /// `warmer` is told of each sleep; its thread is the owner's to run.
    public init(ports: [(port: any PacketPort, queue: Int)] = [], wakeups: WakeSet? = nil, member: Int = 0,
                shared: SharedWatch? = nil, spinCycles: UInt64 = 0,
                maximumSleep: UInt64 = 1_000_000, polledPortNap: UInt64 = 50_000, sleepsAfterWork: Bool = false,
                borrowsEventSet: Bool = false, warmer: CoreWarmer? = nil) {
        precondition(ports.count <= 64, "at most 64 ports per loop")
        self.warmer = warmer
        self.spinCycles = spinCycles
        self.sleepsAfterWork = sleepsAfterWork
        self.maximumSleep = maximumSleep
        self.polledPortNap = polledPortNap
        self.wakeups = wakeups
        self.member = member
        self.shared = shared
        var fds: [Int32] = wakeups.map { [$0.descriptor(member)] } ?? []
        wakeupCount = fds.count
        var polled: UInt64 = 0
        var owners: [Int] = Array(repeating: -1, count: fds.count)
        for (i, (port, queue)) in ports.enumerated() {
            if let fd = port.readinessDescriptor(queue: queue) {
                owners.append(i)
                fds.append(fd)
            } else {
                polled |= 1 << UInt64(i)
            }
        }
        descriptorPorts = owners
        polledPorts = polled
        allPorts = ports.count == 64 ? .max : (1 << UInt64(ports.count)) - 1
        readyPorts = allPorts
        watchesPolledPort = polled != 0
        descriptorCount = fds.count
        descriptors = .allocate(capacity: max(1, fds.count))
        for (i, fd) in fds.enumerated() { descriptors[i] = pollfd(fd: fd, events: Int16(POLLIN), revents: 0) }
        tokens = .allocate(capacity: Self.eventCapacity)
        masks = .allocate(capacity: Self.eventCapacity)
        var lent: (port: any PacketPort, queue: Int, index: Int)?
        var lentSet: Int32 = -1
        if borrowsEventSet && shared == nil {
            for (i, (port, queue)) in ports.enumerated() {
                if let s = port.lendableEventSet(queue: queue) { lent = (port, queue, i); lentSet = s; break }
            }
        }
        var set = fds.isEmpty || fds.count > Self.eventCapacity ? -1 : lent != nil ? lentSet : cflex_epoll_create()
        var added: [Int32] = []
        for (i, fd) in fds.enumerated() where set >= 0 && fd != lentSet {
            if cflex_epoll_ctl(set, Int32(CFLEX_EPOLL_ADD), fd, UInt32(CFLEX_EPOLLIN), Self.loopToken(i)) == 0 {
                added.append(fd)
                continue
            }
            // No event set, then: the loop sleeps in ppoll, and a lent set gets back
            // only the port's own descriptors.
            if lent != nil {
                for fd in added { _ = cflex_epoll_ctl(set, Int32(CFLEX_EPOLL_DEL), fd, 0, 0) }
            } else {
                Glibc.close(set)
            }
            set = -1
        }
        eventSet = set
        lender = set >= 0 ? lent : nil
    }

    /// Tokens of the loop's descriptors in its event set: their index with a tag no
    /// port's token has (a TCP port's are connection slots, or all ones).
    static let loopTokenTag: UInt64 = 0x4C4F_4F50 << 32
    @inline(__always) static func loopToken(_ index: Int) -> UInt64 { loopTokenTag | UInt64(index) }
    /// Whether `token` names one of a loop's descriptors (in a lent set, the port's are
    /// the others).
    @inline(__always) public static func isLoopToken(_ token: UInt64) -> Bool { token >> 32 == loopTokenTag >> 32 }

    deinit {
        if lender != nil {
            // A borrowed set holds every descriptor of ours but itself: take them out.
            for i in 0..<descriptorCount where descriptors[i].fd != eventSet {
                _ = cflex_epoll_ctl(eventSet, Int32(CFLEX_EPOLL_DEL), descriptors[i].fd, 0, 0)
            }
        } else if eventSet >= 0 {
            Glibc.close(eventSet)
        }
        descriptors.deallocate()
        tokens.deallocate()
        masks.deallocate()
    }

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
        if watchesPolledPort && polledPortNap == 0 && shared == nil {
            pollOnce()
            if r.hasMore { readyPorts = allPorts } else if r.work == 0 { _ = whenIdle() }
            return
        }
        readyPorts = allPorts
        if r.hasMore { return }
        if r.work > 0 {
            var spins = false
            if spinCycles > 0 {
                noteWork(at: cflex_rdtsc())
                spins = averageGap < spinCycles
            }
            idleSince = 0
            if !sleepsAfterWork || spins || watchesPolledPort { return learnReadiness() }
        } else if spinCycles > 0 && keepsSpinning(at: cflex_rdtsc()) {
            return learnReadiness()
        }
        if whenIdle() { return }
        sleep(atMost: r.sleepLimit)
    }

    /// Before a round that follows without a sleep, with a borrowed event set: one
    /// zero-timeout wait says which ports are ready and gives the lender its events
    /// (which its receive would otherwise wait for itself). Without one, every port is.
    @inline(__always)
    func learnReadiness() {
        if lender != nil && !watchesPolledPort { _ = wait(nanoseconds: 0, watched: descriptorCount) }
    }

    /// Whether the next round should receive from port `i` of `init`'s list (see
    /// Readiness).
    @inline(__always)
    public func isReady(port i: Int) -> Bool { readyPorts & (1 << UInt64(i)) != 0 }

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

    /// A loop that never sleeps: the polled ports are ready, the socket ports only when
    /// a zero-timeout wait, made every `socketCheckCycles`, finds them readable.
    func pollOnce() {
        readyPorts = polledPorts
        let now = cflex_rdtsc()
        if now &- lastSocketCheck >= Self.socketCheckCycles {
            lastSocketCheck = now
            if !wait(nanoseconds: 0, watched: descriptorCount) { readyPorts = allPorts }
        }
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
            if wakeupCount > 0 { wakeups!.drain(member) }
        } else {
            _ = wait(nanoseconds: ns, watched: watched)
            warmer?.noteSleep()
        }
        if holdsTurn { shared!.holder.store(-1, ordering: .releasing) }
    }

    /// Waits up to `ns` for one of the first `watched` descriptors, then drains the
    /// wakeup member if it fired. Returns whether the readiness of every port is now
    /// known (`readyPorts`): only a wait on the loop's event set, on every descriptor,
    /// tells; after any other the caller looks at every port.
    func wait(nanoseconds ns: UInt64, watched: Int) -> Bool {
        guard eventSet >= 0 && watched == descriptorCount else {
            _ = cflex_poll_ns(descriptors, UInt32(watched), ns)
            if wakeupCount > 0 { wakeups!.drain(member) }
            return false
        }
        let n = cflex_epoll_wait_ns(eventSet, tokens, masks, Int32(lender == nil ? descriptorCount : Self.eventCapacity), ns)
        guard n >= 0 else {
            if wakeupCount > 0 { wakeups!.drain(member) }
            return false
        }
        var ready = polledPorts
        var wakeupReadable = false
        var lentEvents = 0
        for e in 0..<Int(n) {
            let token = tokens[e]
            guard Self.isLoopToken(token) else {
                // The lender's: moved to the front (never past `e`) and delivered below.
                tokens[lentEvents] = token
                masks[lentEvents] = masks[e]
                lentEvents &+= 1
                continue
            }
            let port = descriptorPorts[Int(truncatingIfNeeded: token & 0xFFFF_FFFF)]
            if port < 0 { wakeupReadable = true } else { ready |= 1 << UInt64(port) }
        }
        if let lender, lentEvents > 0 {
            ready |= 1 << UInt64(lender.index)
            lender.port.deliverEvents(queue: lender.queue, tokens: tokens, masks: masks, count: lentEvents)
        }
        readyPorts = ready
        if wakeupReadable { wakeups!.drain(member) }
        return true
    }
}
