import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// How the servers stop: SIGINT or SIGTERM asks them to (once, cleanly); SIGHUP and
/// SIGPIPE are ignored (a closed client socket must not kill a server). Install once,
/// at start, before any worker thread.
public enum Termination {
    static let asked = Atomic<Bool>(false)
    static let semaphore = DispatchSemaphore(value: 0)
    nonisolated(unsafe) static var sources: [DispatchSourceSignal] = []

    /// Routes the signals; idempotent.
    public static func install() {
        guard sources.isEmpty else { return }
        for sig in [SIGINT, SIGTERM, SIGHUP, SIGPIPE] { signal(sig, SIG_IGN) }
        sources = [SIGINT, SIGTERM].map { sig in
            let s = DispatchSource.makeSignalSource(signal: sig)
            s.setEventHandler {
                if !asked.exchange(true, ordering: .acquiringAndReleasing) { semaphore.signal() }
            }
            s.resume()
            return s
        }
    }

    /// Whether SIGINT or SIGTERM arrived (for loops that poll).
    public static var requested: Bool { asked.load(ordering: .acquiring) }

    /// Blocks until SIGINT or SIGTERM arrives.
    public static func wait() {
        semaphore.wait()
        semaphore.signal()  // later waiters return at once
    }
}
