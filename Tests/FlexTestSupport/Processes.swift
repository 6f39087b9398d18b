import CFlexSys
import FlexWire
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// What a test helper could not do (a missing binary, a failed setup command).
public struct TestSetupError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs a program; returns its exit status and output. Bounded by `timeout`.
public func runProcess(_ path: String, _ args: [String], timeout: TimeInterval = 60) throws -> (Int32, String) {
    let p = Process()
    p.executableURL = URL(fileURLWithPath: path)
    p.arguments = args
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = pipe
    try p.run()
    let deadline = Date().addingTimeInterval(timeout)
    while p.isRunning && Date() < deadline { usleep(20_000) }
    if p.isRunning { p.terminate(); p.waitUntilExit() }
    let out = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    return (p.terminationStatus, out)
}

/// An executable of this package built beside the test bundle (`swift build` builds it).
public func builtExecutable(_ name: String) throws -> String {
    let dir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
    let path = dir.appendingPathComponent(name).path
    guard FileManager.default.isExecutableFile(atPath: path) else {
        throw TestSetupError("\(path) is missing: run `swift build` before `swift test`")
    }
    return path
}

/// `ip ARGS` (iproute2); throws with its output when it fails.
@discardableResult
public func ip(_ args: String) throws -> String {
    let (rc, out) = try runProcess("/usr/sbin/ip", args.split(separator: " ").map(String.init), timeout: 10)
    if rc != 0 { throw TestSetupError("ip \(args): \(out)") }
    return out
}

/// Whether network-namespace tests can run: root and iproute2 (CI has both).
public var canMakeNamespaces: Bool {
    getuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/sbin/ip")
}

/// Whether the running kernel is at least `major.minor` (XDP reply offload needs 5.18).
public func kernelIsAtLeast(_ major: Int, _ minor: Int) -> Bool {
    var u = utsname()
    uname(&u)
    let release = withUnsafeBytes(of: &u.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
    let parts = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
    guard parts.count == 2 else { return false }
    return (parts[0], parts[1]) >= (major, minor)
}

/// A child process whose output is collected on a background queue, so it never
/// blocks on a full pipe; `output` is what it has printed so far.
public final class ChildProcess: @unchecked Sendable {
    public let process = Process()
    private let lock = NSLock()
    private var collected = Data()

    public init(_ path: String, _ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = args
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        pipe.fileHandleForReading.readabilityHandler = { [weak self] h in
            let d = h.availableData
            guard let self, !d.isEmpty else { return }
            self.lock.lock()
            self.collected += d
            self.lock.unlock()
        }
        try process.run()
    }

    public var output: String {
        lock.lock()
        defer { lock.unlock() }
        return String(decoding: collected, as: UTF8.self)
    }

    /// Waits until the output contains `text` (true) or the process ends or `timeout`
    /// passes (false).
    public func waitForOutput(_ text: String, timeout: TimeInterval) -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if output.contains(text) { return true }
            if !process.isRunning { return output.contains(text) }
            usleep(20_000)
        }
        return false
    }

    /// Waits for the process to end (SIGKILL after `timeout`) and reaps it (not
    /// `waitUntilExit`, which can wait for a run loop the test thread never runs);
    /// returns its exit status, or 128 + the signal that ended it.
    @discardableResult
    public func waitForExit(timeout: TimeInterval) -> Int32 {
        let pid = process.processIdentifier
        var status: Int32 = 0
        let deadline = Date().addingTimeInterval(timeout)
        var rc = waitpid(pid, &status, WNOHANG)
        while rc == 0 {
            if Date() > deadline { kill(pid, SIGKILL) }
            usleep(20_000)
            rc = waitpid(pid, &status, WNOHANG)
        }
        usleep(50_000)  // the last output
        if rc < 0 {  // Foundation reaped it first
            while process.isRunning { usleep(10_000) }
            return process.terminationStatus
        }
        return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Sends `signal` and reaps the process; see `waitForExit`.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: TimeInterval = 10) -> Int32 {
        kill(process.processIdentifier, signal)
        return waitForExit(timeout: timeout)
    }
}

/// A network namespace made for a test (`ip netns add`, loopback up), deleted with the
/// object. `run` executes code inside it.
public final class NetworkNamespace: @unchecked Sendable {
    public let name: String

    public init(_ name: String) throws {
        self.name = name
        _ = try? ip("netns del \(name)")  // left over from a run that was killed
        try ip("netns add \(name)")
        try ip("-n \(name) link set lo up")
    }

    deinit { _ = try? ip("netns del \(name)") }

    /// Runs `body` on a new thread that has joined this namespace (threads it starts,
    /// and sockets it opens, belong to the namespace too) and waits for it.
    public func run<T>(_ body: @escaping () throws -> T) throws -> T {
        nonisolated(unsafe) var result: Result<T, Error> = .failure(TestSetupError("\(name): the thread did not run"))
        let done = DispatchSemaphore(value: 0)
        let path = "/var/run/netns/\(name)"
        let thread = Thread {
            defer { done.signal() }
            let rc = cflex_join_network_namespace(path)
            guard rc == 0 else {
                result = .failure(TestSetupError("setns \(path): errno \(-rc)"))
                return
            }
            result = Result { try body() }
        }
        thread.start()
        done.wait()
        return try result.get()
    }
}

/// Sends each of `datagrams` from a fresh UDP socket to `host:port`.
public func sendDatagrams(_ datagrams: [[UInt8]], to port: UInt16, host: IPv4Address = .loopback) {
    let s = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
    defer { close(s) }
    var a = sockaddr_in()
    a.sin_family = sa_family_t(AF_INET)
    a.sin_port = port.bigEndian
    a.sin_addr.s_addr = host.value.bigEndian
    for d in datagrams {
        _ = withUnsafePointer(to: &a) { sa in
            sa.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(s, d, d.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
    }
}
