import FlexCLI
import FlexWire
import Foundation

/// A veth pair between this process (the client end, `clientInterface`, 198.18.9.1) and a
/// network namespace the servers run in (the server end, `serverInterface`,
/// 198.18.9.2), made so that each side's receive path runs on that side's core, as a
/// NIC's does on the core its queue interrupts, and not in the other side's send.
///
/// On loopback the kernel delivers a datagram or segment to the receiving socket inside
/// the sender's system call: a server's reply pays for the client's receive, and the
/// client's request for the server's. Here both ends have GRO on and TSO and GSO off,
/// so veth hands every frame to the receiving end's NAPI instance, and NAPI is threaded
/// (`/sys/class/net/IFACE/threaded`): the server end's receive, and an XDP program
/// attached to it, run in kernel threads pinned to the server CPU, the client end's to
/// the client CPU. `receiveCPUSeconds` is the server end's threads' CPU time, the
/// server core's share that no server process shows.
///
/// Needs root, `ip` (iproute2) and `ethtool`. `remove()` deletes the pair and the
/// namespace; what a killed run left is deleted before a new pair is made.
final class VethLink {
    static let namespace = "flexbench-compare"
    static let clientInterface = "flexc"
    static let serverInterface = "flexs"
    static let clientAddress = IPv4Address(198, 18, 9, 1)
    static let serverAddress = IPv4Address(198, 18, 9, 2)

    /// Makes the pair and pins each end's receive threads (`serverCPU`, `clientCPU`:
    /// taskset lists).
    init(serverCPU: String?, clientCPU: String?) throws {
        guard getuid() == 0 else { throw RuntimeFailure("--link veth needs root (network namespaces)") }
        for tool in ["ip", "ethtool"] where Self.which(tool) == nil {
            throw RuntimeFailure("--link veth needs `\(tool)` (apt-get install \(tool == "ip" ? "iproute2" : tool))")
        }
        Self.remove()
        let ns = Self.namespace, c = Self.clientInterface, s = Self.serverInterface
        try Self.run("ip", "netns", "add", ns)
        do {
            try Self.run("ip", "link", "add", c, "type", "veth", "peer", "name", s, "netns", ns)
            try Self.run("ip", "addr", "add", "\(Self.clientAddress)/24", "dev", c)
            try Self.run("ip", "netns", "exec", ns, "ip", "addr", "add", "\(Self.serverAddress)/24", "dev", s)
            for (prefix, interface) in [([String](), c), (["ip", "netns", "exec", ns], s)] {
                try Self.run(prefix + ["ethtool", "-K", interface, "gro", "on", "tso", "off", "gso", "off"])
                try Self.run(prefix + ["ip", "link", "set", interface, "up"])
                try Self.run(prefix + ["sh", "-c", "echo 1 > /sys/class/net/\(interface)/threaded"])
            }
            try Self.run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            self.serverCPU = serverCPU
            self.clientCPU = clientCPU
            try pinReceiveThreads()
        } catch {
            Self.remove()
            throw error
        }
    }

    let serverCPU: String?
    let clientCPU: String?

    /// Pins both ends' NAPI threads to their sides' CPUs. Attaching or detaching an XDP
    /// program may make new ones: call again after a server starts.
    func pinReceiveThreads() throws {
        for (interface, cpus) in [(Self.serverInterface, serverCPU), (Self.clientInterface, clientCPU)] {
            guard let cpus else { continue }
            let threads = Self.receiveThreads(of: interface)
            guard !threads.isEmpty else { throw RuntimeFailure("--link veth: \(interface) has no NAPI thread") }
            for pid in threads { try ServerProcess.pin(pid, cpus) }
        }
    }

    /// CPU time, in seconds, of the server end's receive threads.
    var receiveCPUSeconds: Double {
        Self.receiveThreads(of: Self.serverInterface).reduce(0) { $0 + ServerProcess.cpuSeconds(of: $1) }
    }

    /// The command that runs `arguments` in the servers' namespace.
    static func inNamespace(_ arguments: [String]) -> (path: String, arguments: [String]) {
        (which("ip") ?? "/usr/sbin/ip", ["netns", "exec", namespace] + arguments)
    }

    /// Deletes the pair and the namespace, if there are. (Deleting the client end takes
    /// the pair at once; a deleted namespace takes its end only later, in the
    /// background.)
    static func remove() {
        _ = try? run("ip", "link", "del", clientInterface)
        _ = try? run("ip", "netns", "del", namespace)
    }

    /// The kernel threads named `napi/INTERFACE-ID` (threaded NAPI).
    static func receiveThreads(of interface: String) -> [Int32] {
        let prefix = "napi/\(interface)-"
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap { entry -> Int32? in
            guard let pid = Int32(entry),
                  let comm = try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8),
                  comm.hasPrefix(prefix) else { return nil }
            return pid
        }
    }

    static func which(_ tool: String) -> String? {
        ["/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"].map { $0 + tool }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    static func run(_ arguments: String...) throws { try run(arguments) }

    /// Runs a command (`arguments[0]` looked up in the system directories) and throws
    /// with its error output unless it exits 0.
    static func run(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: which(arguments[0]) ?? arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let errors = Pipe()
        process.standardOutput = FileHandle.nullDevice
        process.standardError = errors
        try process.run()
        let said = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw RuntimeFailure("\(arguments.joined(separator: " ")): \(String(decoding: said, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))")
        }
    }
}
