#if canImport(Glibc)
import Glibc
#endif
import CFlexSys

/// One eventfd per member of a group of threads that feed each other's queues (a
/// server's cores): a thread that delivered to others wakes them once per burst with a
/// bit mask, never per item; a thread about to sleep waits on its own descriptor (with
/// its ports', in its `CoreLoop`) and drains it when it wakes.
public final class WakeSet: @unchecked Sendable {
    let descriptors: [Int32]
    public var count: Int { descriptors.count }

    public init(count: Int) throws {
        var fds: [Int32] = []
        for _ in 0..<count {
            let fd = cflex_eventfd()
            guard fd >= 0 else {
                fds.forEach { close($0) }
                throw PortError("eventfd failed (\(-fd))")
            }
            fds.append(fd)
        }
        descriptors = fds
    }

    deinit { descriptors.forEach { close($0) } }

    /// Member `i`'s descriptor, to wait on.
    public func descriptor(_ i: Int) -> Int32 { descriptors[i] }

    public func wake(_ i: Int) { _ = cflex_eventfd_signal(descriptors[i]) }

    /// Wakes the members whose bits are set in `mask` (members 0...63), but `except`.
    public func wake(mask: UInt64, except: Int? = nil) {
        var m = mask
        if let except, except < 64 { m &= ~(1 << UInt64(except)) }
        while m != 0 {
            let i = m.trailingZeroBitCount
            m &= m &- 1
            if i < descriptors.count { wake(i) }
        }
    }

    public func wakeAll() { descriptors.indices.forEach(wake) }

    /// Clears member `i`'s pending wakeups (after it woke).
    public func drain(_ i: Int) { _ = cflex_eventfd_drain(descriptors[i]) }
}
