@testable import FlexIO
import CFlexSys
import FlexTestSupport
import FlexWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

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

    /// Readiness on real sockets: a sleep reports the port whose socket turned
    /// readable, not the idle one; a wakeup alone reports no port; a round that did
    /// not sleep may receive from every port.
    @Test func aSleepSaysWhichPortsAreReadable() throws {
        let quiet = try KernelUDPPort(port: 0), busy = try KernelUDPPort(port: 0)
        let wakeups = try WakeSet(count: 1)
        let loop = CoreLoop(ports: [(quiet, 0), (busy, 0)], wakeups: wakeups, member: 0)
        #expect(loop.isReady(port: 0) && loop.isReady(port: 1), "before any sleep, every port")

        wakeups.wake(0)
        loop.sleep(atMost: 1_000_000_000)
        #expect(!loop.isReady(port: 0) && !loop.isReady(port: 1), "woken, but no port is readable")

        sendDatagrams([[1, 2, 3]], to: busy.port)
        loop.sleep(atMost: 1_000_000_000)
        #expect(!loop.isReady(port: 0) && loop.isReady(port: 1))

        let batch = PacketBatch(capacity: 8)
        #expect(busy.receive(queue: 0, into: batch) == 1)
        busy.release(batch)
        loop.settle(after: CoreLoop.Round(work: 1))
        #expect(loop.isReady(port: 0) && loop.isReady(port: 1), "no sleep since the round: look everywhere")
    }

    /// With `sleepsAfterWork`, a round with work is followed by the sleep, which
    /// returns at once when a socket is readable and waits (here: until its limit)
    /// when none is; a round that says it holds more goes round again at once.
    @Test func sleepingAfterWorkIsTheCheckForMore() throws {
        let port = try KernelUDPPort(port: 0)
        let loop = CoreLoop(ports: [(port, 0)], maximumSleep: 200_000_000, sleepsAfterWork: true)
        let clock = ContinuousClock()

        sendDatagrams([[1, 2, 3]], to: port.port)
        var took = clock.measure { loop.settle(after: CoreLoop.Round(work: 1)) }
        #expect(took < .milliseconds(100), "a readable socket ends the sleep at once")
        #expect(loop.isReady(port: 0))

        let batch = PacketBatch(capacity: 8)
        #expect(port.receive(queue: 0, into: batch) == 1)
        port.release(batch)
        took = clock.measure { loop.settle(after: CoreLoop.Round(work: 1, sleepLimit: 30_000_000)) }
        #expect(took >= .milliseconds(25), "nothing readable: the loop sleeps")
        #expect(!loop.isReady(port: 0))

        took = clock.measure { loop.settle(after: CoreLoop.Round(work: 1, hasMore: true)) }
        #expect(took < .milliseconds(20))
        #expect(loop.isReady(port: 0), "went round again without sleeping")
    }

    /// With no limit (`maximumSleep` and the round's both `.max`) the sleep has no
    /// timer: it lasts until its wakeup member is woken (or a port turns readable).
    @Test func aSleepWithNoLimitLastsUntilWoken() throws {
        let wakeups = try WakeSet(count: 1)
        let loop = CoreLoop(wakeups: wakeups, member: 0, maximumSleep: .max)
        let clock = ContinuousClock()
        let waker = Thread {
            usleep(150_000)
            wakeups.wake(0)
        }
        waker.start()
        let took = clock.measure { loop.sleep(atMost: .max) }
        #expect(took >= .milliseconds(140), "only the wakeup, 150 ms in, may end it")
    }

    /// A TCP port's lent event set: the loop sleeps on it, so a connection's data wakes
    /// the loop and reaches the port's next receive without a wait of the port's own;
    /// a round that goes on without sleeping learns from one zero wait that only the
    /// datagram port has something; the wakeup member still wakes the sleep; and once
    /// the loop is gone, the set holds only the port's own descriptors again.
    @Test func aBorrowedEventSetAnswersForTheLoopAndTheConnections() throws {
        let tcp = try KernelTCPPort(port: 0), udp = try KernelUDPPort(port: 0)
        let wakeups = try WakeSet(count: 1)
        let batch = PacketBatch(capacity: 8)
        let set = try #require(tcp.lendableEventSet(queue: 0))
        let clock = ContinuousClock()
        var client: TCPClient?
        do {
            let loop = CoreLoop(ports: [(tcp, 0), (udp, 0)], wakeups: wakeups, member: 0, maximumSleep: 2_000_000_000,
                                borrowsEventSet: true)
            #expect(loop.eventSet == set)
            client = try TCPClient(port: tcp.port)
            loop.sleep(atMost: .max)
            #expect(loop.isReady(port: 0) && !loop.isReady(port: 1), "the listener's event, through the lent set")
            _ = tcp.receive(queue: 0, into: batch)  // accepts
            tcp.release(batch)

            client?.send("hello")
            loop.sleep(atMost: .max)
            #expect(loop.isReady(port: 0) && !loop.isReady(port: 1), "the connection's data; the datagram port idle")
            #expect(tcp.queues[0].delivered == 1, "the event went to the port")
            #expect(tcp.receive(queue: 0, into: batch) == 1)
            #expect(tcp.queues[0].delivered == 0, "taken by the receive")
            let frame = batch[0]
            #expect(Array(UnsafeRawBufferPointer(frame.bytes)[FrameBuilder.tcpHeadersLength...]) == Array("hello".utf8))
            tcp.release(batch)

            sendDatagrams([[1, 2, 3]], to: udp.port)
            usleep(1_000)
            loop.settle(after: CoreLoop.Round(work: 1))
            #expect(!loop.isReady(port: 0) && loop.isReady(port: 1), "after work, without a sleep: only the datagram port")
            #expect(udp.receive(queue: 0, into: batch) == 1)
            udp.release(batch)

            wakeups.wake(0)
            let took = clock.measure { loop.sleep(atMost: .max) }
            #expect(took < .milliseconds(500) && !loop.isReady(port: 0) && !loop.isReady(port: 1), "woken, nothing readable")
        }
        sendDatagrams([[4]], to: udp.port)
        usleep(1_000)
        var readable = pollfd(fd: set, events: Int16(POLLIN), revents: 0)
        #expect(poll(&readable, 1, 0) == 0, "the loop took its descriptors out of the port's set")
        withExtendedLifetime(client) {}
    }

    /// A loop that never sleeps (a poll-mode port, no nap) receives from its polled
    /// port every round but looks at its sockets only every `socketCheckCycles`.
    @Test func aPollingLoopLooksAtItsSocketsNowAndThen() throws {
        let polled = MemoryPort(), socket = try KernelUDPPort(port: 0)
        let loop = CoreLoop(ports: [(polled, 0), (socket, 0)], polledPortNap: 0)
        loop.settle(after: CoreLoop.Round(work: 0))
        #expect(loop.isReady(port: 0) && !loop.isReady(port: 1), "looked: nothing to read")
        sendDatagrams([[1]], to: socket.port)
        usleep(1_000)
        loop.lastSocketCheck = cflex_rdtsc()
        loop.settle(after: CoreLoop.Round(work: 1))
        #expect(loop.isReady(port: 0) && !loop.isReady(port: 1), "not time to look again")
        loop.lastSocketCheck = cflex_rdtsc() &- CoreLoop.socketCheckCycles
        loop.settle(after: CoreLoop.Round(work: 1))
        #expect(loop.isReady(port: 1), "looked again: the datagram is there")
        loop.settle(after: CoreLoop.Round(work: 1, hasMore: true))
        #expect(loop.isReady(port: 1), "a round that holds more looks everywhere")
    }

    /// The warmer's policy: it keeps the core warm (sleeps `period`) while its loop
    /// sleeps `minimumRate` times a second or more, else doubles its sleep up to
    /// `longestSleep`, and comes back to `period` as soon as the rate does.
    @Test func aWarmerKeepsUpWithAFastLoopAndBacksOffFromASlowOne() {
        let period = CoreWarmer.period, rate = CoreWarmer.minimumRate
        let atRate = rate * period / 1_000_000_000  // the loop's sleeps in one period at the rate
        #expect(CoreWarmer.nextSleep(current: period, sleeps: atRate, elapsed: period) == (period, true))
        #expect(CoreWarmer.nextSleep(current: period, sleeps: atRate - 1, elapsed: period) == (2 * period, false))
        var sleep = period
        for _ in 0..<12 { sleep = CoreWarmer.nextSleep(current: sleep, sleeps: 0, elapsed: sleep).sleep }
        #expect(sleep == CoreWarmer.longestSleep, "an idle loop: the longest sleep, no longer")
        let longest = CoreWarmer.longestSleep
        #expect(CoreWarmer.nextSleep(current: longest, sleeps: rate * longest / 1_000_000_000, elapsed: longest) == (period, true),
                "the rate is back: the period at once")
        #expect(CoreWarmer.nextSleep(current: period, sleeps: 1, elapsed: 0).warm, "no time passed: no division by zero")
        #expect(CoreWarmer.nextSleep(current: .max, sleeps: 0, elapsed: 1).sleep == CoreWarmer.longestSleep, "the doubling saturates")
        #expect(!CoreWarmer.nextSleep(current: period, sleeps: 1, elapsed: .max).warm, "a long stop (SIGSTOP) is no high rate")
        #expect(CoreWarmer.nextSleep(current: period, sleeps: .max, elapsed: .max).warm)
        #expect(!CoreWarmer.nextSleep(current: period, sleeps: 0, elapsed: 0).warm)
    }

    /// A loop that sleeps often tells its warmer, which then keeps warm rounds and
    /// knows the loop's CPU; once the loop is quiet it keeps none; `stop` ends the
    /// warmer's run in its long sleep, and the warmer may run again.
    @Test func aWarmerHearsItsLoopAndStops() throws {
        let warmer = try CoreWarmer()
        let wakeups = try WakeSet(count: 1)
        let loop = CoreLoop(wakeups: wakeups, member: 0, maximumSleep: .max, warmer: warmer)
        let done = DispatchSemaphore(value: 0)
        Thread {
            warmer.run()
            done.signal()
        }.start()
        let clock = ContinuousClock(), start = clock.now
        while warmer.warmRounds.load(ordering: .relaxed) < 2 && clock.now - start < .seconds(5) {
            wakeups.wake(0)
            loop.sleep(atMost: .max)  // returns at once: woken
        }
        #expect(warmer.warmRounds.load(ordering: .relaxed) >= 2, "a loop waking this often is kept warm")
        #expect(warmer.loopCPU.load(ordering: .relaxed) >= 0)
        #expect(warmer.loopSleeps.load(ordering: .relaxed) > 0)

        usleep(200_000)  // the loop went quiet: the warmer backs off toward its longest sleep
        let before = warmer.warmRounds.load(ordering: .relaxed)
        usleep(200_000)
        #expect(warmer.warmRounds.load(ordering: .relaxed) == before, "a quiet loop is not kept warm")
        warmer.stop()
        #expect(done.wait(timeout: .now() + 2) == .success, "stop ends the run")
        Thread {  // and it may run again
            warmer.run()
            done.signal()
        }.start()
        warmer.stop()
        #expect(done.wait(timeout: .now() + 2) == .success)
    }
}
