#if canImport(Glibc)
import Glibc
#endif
import CFlexSys

/// Starts `body` on a new named thread (a POSIX thread: no Foundation needed), for
/// the loops that own a core: steering emulators, workers.
public enum CoreThread {
    final class Start {
        let name: String
        let body: () -> Void
        init(_ name: String, _ body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Runs `body` on a detached thread named `name` (at most 15 characters are kept).
    public static func start(name: String, _ body: @escaping @Sendable () -> Void) {
        let start = Unmanaged.passRetained(Start(name, body)).toOpaque()
        var thread = pthread_t()
        let rc = pthread_create(&thread, nil, { argument in
            let start = Unmanaged<Start>.fromOpaque(argument!).takeRetainedValue()
            _ = cflex_name_thread(start.name)
            start.body()
            return nil
        }, start)
        precondition(rc == 0, "pthread_create failed (\(rc))")
        pthread_detach(thread)
    }
}
