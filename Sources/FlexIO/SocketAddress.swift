#if canImport(Glibc)
import Glibc
#endif
import CFlexSys
import FlexWire

/// IPv4 socket helpers shared by the kernel ports.
enum Socket {
    static func errorText(_ what: String, _ err: Int32 = errno) -> PortError {
        PortError("\(what): \(String(cString: strerror(err)))")
    }

    static func address(_ ip: IPv4Address, _ port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = ip.value.bigEndian
        return a
    }

    static func endpoint(_ a: sockaddr_in) -> (IPv4Address, UInt16) {
        (IPv4Address(UInt32(bigEndian: a.sin_addr.s_addr)), UInt16(bigEndian: a.sin_port))
    }

    /// A non-blocking socket bound to `ip:port` with SO_REUSEADDR and SO_REUSEPORT, so
    /// that several queues can share the port and the kernel spreads flows over them.
    /// With `claiming` (a port group's first socket), the port must be free first: a
    /// second server started on the port of a running one fails, as memcached does,
    /// instead of silently taking half its traffic.
    static func bound(type: Int32, ip: IPv4Address, port: UInt16, claiming: Bool = false) throws -> Int32 {
        if claiming && port != 0 { try claim(type: type, ip: ip, port: port) }
        let fd = cflex_socket(type)
        guard fd >= 0 else { throw errorText("socket") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        return try bind(fd, ip, port)
    }

    /// Binds and closes a socket without SO_REUSEPORT: fails if anything holds the port
    /// (TCP keeps SO_REUSEADDR, so connections lingering in TIME_WAIT do not count).
    /// Best effort: two servers started at the same instant may both pass.
    static func claim(type: Int32, ip: IPv4Address, port: UInt16) throws {
        let fd = cflex_socket(type)
        guard fd >= 0 else { throw errorText("socket") }
        var one: Int32 = 1
        if type == Int32(SOCK_STREAM.rawValue) { setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size)) }
        close(try bind(fd, ip, port))
    }

    /// `fd` bound to `ip:port`, or closed and an error naming the address.
    static func bind(_ fd: Int32, _ ip: IPv4Address, _ port: UInt16) throws -> Int32 {
        var a = address(ip, port)
        let rc = withUnsafePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw errorText("bind \(ip):\(port)", e)
        }
        return fd
    }

    /// Asks for a receive buffer of `bytes`: past `net.core.rmem_max` with
    /// SO_RCVBUFFORCE where the process may (root), else as far as SO_RCVBUF goes.
    /// Returns the size the kernel granted (it doubles the request for bookkeeping).
    @discardableResult
    static func setReceiveBuffer(_ fd: Int32, bytes: Int) -> Int {
        var size = Int32(clamping: bytes)
        let length = socklen_t(MemoryLayout<Int32>.size)
        if setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, length) != 0 {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, length)
        }
        var granted: Int32 = 0
        var got = length
        getsockopt(fd, SOL_SOCKET, SO_RCVBUF, &granted, &got)
        return Int(granted)
    }

    /// The address a socket is bound to (after binding port 0, the port chosen).
    static func localEndpoint(_ fd: Int32) -> (IPv4Address, UInt16) {
        var a = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        return endpoint(a)
    }

    /// Waits up to `timeout` ms for `fd` to be readable.
    static func waitReadable(_ fd: Int32, timeoutMilliseconds: Int) {
        var p = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        _ = poll(&p, 1, Int32(timeoutMilliseconds))
    }
}
