import Dispatch
import FlexCLI
import FlexWire
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A server started for a comparison, stopped when done.
/// Its output goes to a log file in the temporary directory, named when it fails.
///
/// Servers run in process groups of their own, so a Ctrl-C, a SIGTERM or a hangup
/// reaches only flexbench: from the first server on, flexbench catches them, kills every
/// server it started (and any that starts after), deletes `VethLink`'s pair and exits.
/// A server left running would keep its port, and the next run would measure it.
final class ServerProcess {
    /// The flexkvs binary to start (`given`, or the one beside this flexbench), after
    /// checking it and `memcached` (if one is needed) can run.
    static func flexkvsPath(_ given: String?, memcached: String? = nil) throws -> String {
        let path = given ?? URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent().appendingPathComponent("flexkvs").path
        for p in [memcached, path].compactMap({ $0 }) where !FileManager.default.isExecutableFile(atPath: p) {
            throw RuntimeFailure("\(p) not found (" + (p == path ? "swift build -c release" : "apt-get install memcached") + ")")
        }
        return path
    }

    let process = Process()
    let logPath: String

    /// Starts `path` (on `cpus`, a taskset list, when given; in `VethLink`'s namespace
    /// if `inNamespace`) and waits until it accepts TCP connections at `server`.
    init(path: String, arguments: [String], server: (IPv4Address, UInt16), cpus: String? = nil, inNamespace: Bool = false) throws {
        if let fd = try? KVSLoad.connect(server, udp: false, blocking: true) {
            close(fd)
            throw RuntimeFailure("\(server.0):\(server.1) already accepts connections: another server (one an interrupted run left?) "
                                 + "holds the port; stop it, or choose other ports")
        }
        let command = inNamespace ? VethLink.inNamespace([path] + arguments) : (path: path, arguments: arguments)
        process.executableURL = URL(fileURLWithPath: command.path)
        process.arguments = command.arguments
        logPath = NSTemporaryDirectory() + "flexbench-\(URL(fileURLWithPath: path).lastPathComponent)-\(server.1).log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = FileHandle(forWritingAtPath: logPath) ?? FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        _ = Self.watchSignals
        try process.run()
        let admitted = Self.running.withLock { state -> Bool in
            guard !state.stopping else { return false }
            state.pids.insert(process.processIdentifier)
            return true
        }
        guard admitted else {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw RuntimeFailure("stopping: \(path) was not started")
        }
        do {
            if let cpus { try Self.pin(process.processIdentifier, cpus) }
            // Ready when it accepts a TCP connection (or give up after 10 s).
            let deadline = Date().addingTimeInterval(10)
            while Date() < deadline && process.isRunning {
                if let fd = try? KVSLoad.connect(server, udp: false, blocking: true) { close(fd); return }
                usleep(50_000)
            }
            throw LoadError("\(path) did not start listening at \(server.0):\(server.1) (its output: \(logPath))")
        } catch {
            stop()
            throw error
        }
    }

    /// User plus system time the process has used, in seconds (/proc/PID/stat).
    var cpuSeconds: Double { Self.cpuSeconds(of: process.processIdentifier) }

    /// User plus system time process (or thread) `pid` has used, in seconds.
    static func cpuSeconds(of pid: Int32) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = text.lastIndex(of: ")") else { return 0 }
        let fields = text[text.index(after: close)...].split(separator: " ")
        guard fields.count > 13, let user = Double(fields[11]), let system = Double(fields[12]) else { return 0 }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Busy time of every core since boot, in seconds (/proc/stat: all but idle and iowait).
    static var machineBusySeconds: Double {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let line = text.split(separator: "\n").first, line.hasPrefix("cpu ") else { return 0 }
        let v = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard v.count >= 8 else { return 0 }
        return (v[0] + v[1] + v[2] + v[5] + v[6] + v[7]) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }

    /// Pins process `pid` (every thread it has and will make) to `cpus` with taskset.
    static func pin(_ pid: Int32, _ cpus: String) throws {
        try SystemCommand.run("taskset", "-a", "-p", "-c", cpus, "\(pid)")
    }

    /// Stops the server with SIGTERM, or SIGKILL if it is still running 5 s later.
    func stop() {
        defer { Self.running.withLock { _ = $0.pids.remove(process.processIdentifier) } }
        guard process.isRunning else { return }
        process.terminate()
        let deadline = Date().addingTimeInterval(5)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// The servers started and not yet stopped; once `stopping`, none is admitted.
    static let running = Mutex<(pids: Set<Int32>, stopping: Bool)>(([], false))

    /// Catches SIGINT, SIGTERM and SIGHUP from the first server on: kills the servers,
    /// deletes the veth pair, exits 128 + the signal (with `_exit`: the main thread may
    /// be exiting too).
    static let watchSignals: Void = {
        for signal in [SIGINT, SIGTERM, SIGHUP] {
            Glibc.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: .global())
            source.setEventHandler {
                let pids = running.withLock { state in
                    state.stopping = true
                    return state.pids
                }
                for pid in pids { kill(pid, SIGKILL) }
                if VethLink.isMade.load(ordering: .relaxed) { VethLink.remove() }
                print("flexbench: stopped by signal \(signal); its servers were killed")
                fflush(stdout)
                _exit(128 + signal)
            }
            source.resume()
            signalSources.withLock { $0.append(source) }
        }
    }()

    /// Keeps the signal sources alive.
    static let signalSources = Mutex<[any DispatchSourceSignal]>([])
}
