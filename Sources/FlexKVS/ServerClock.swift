import FlexIO
#if canImport(Glibc)
import Glibc
#endif

/// Server time as memcached keeps it: seconds since start for expiry (so a wall-clock
/// jump cannot expire everything), and nanoseconds for ordering stores against
/// `flush_all`.
public struct ServerClock: Sendable {
    /// Expiry times above this are absolute unix times (memcached's 30 days).
    public static let relativeLimit: Int64 = 60 * 60 * 24 * 30
    let startUnix: Int64
    let startMonotonic: UInt64

    public init() {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        startUnix = Int64(ts.tv_sec)
        startMonotonic = monotonicNanoseconds()
    }

    /// Nanoseconds since the server started (strictly increasing between calls that are
    /// a nanosecond apart; used to order stores and flushes).
    public var nanos: UInt64 { monotonicNanoseconds() - startMonotonic + 1 }

    /// Where `seconds` starts: memcached's relative clock reads 62 at start (its
    /// process_started lies 62 s back), so the relative times meta commands print (an
    /// item's TTL set in the past, `me exp=`) come out as memcached's.
    public static let origin: UInt32 = 62

    /// Server seconds: `origin` at start, then one per second.
    public var seconds: UInt32 { UInt32(truncatingIfNeeded: nanos / 1_000_000_000) + Self.origin }

    /// Whole seconds since the server started.
    public var uptime: UInt32 { seconds - Self.origin }

    /// The server-relative expiry for a client's exptime: 0 never; up to 30 days
    /// relative; larger values absolute unix time; negative or past: already expired (1).
    public func expiry(_ exptime: Int64) -> UInt32 {
        if exptime == 0 { return 0 }
        if exptime < 0 { return 1 }
        if exptime > Self.relativeLimit {
            let relative = exptime - startUnix
            return relative <= 0 ? 1 : UInt32(clamping: relative + Int64(Self.origin))
        }
        return UInt32(clamping: Int64(seconds) + exptime)
    }

    /// The unix time of a server-relative expiry.
    public func unixTime(atServerSeconds t: UInt32) -> Int64 { startUnix + Int64(t) - Int64(Self.origin) }

    /// The server second (as `seconds` counts them) of a server nanosecond stamp.
    public func seconds(atServerNanos t: UInt64) -> UInt32 { UInt32(truncatingIfNeeded: t / 1_000_000_000) + Self.origin }

    /// The unix time of a server nanosecond stamp.
    public func unixTime(atServerNanos t: UInt64) -> Int64 { startUnix + Int64(t / 1_000_000_000) }

    /// Unix time now.
    public var unixTime: Int64 { startUnix + Int64(seconds) - Int64(Self.origin) }
}
