import FlexCLI
import FlexWire
import Foundation
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// A veth pair between this process (the client end, `clientInterface`, 198.18.9.1) and a
/// network namespace the servers run in (the server end, `serverInterface`,
/// 198.18.9.2), made so that each side's receive path runs in threads of its own, on
/// that side's core when CPUs are given, as a NIC's does on the core its queue
/// interrupts, and not in the other side's send.
///
/// On loopback the kernel delivers a datagram or segment to the receiving socket inside
/// the sender's system call: a server's reply pays for the client's receive, and the
/// client's request for the server's. Here both ends have GRO on and TSO and GSO off,
/// so veth hands every frame to the receiving end's NAPI instance, and NAPI is threaded
/// (`/sys/class/net/IFACE/threaded`, Linux 5.13 or later): the server end's receive,
/// and an XDP program attached to it, run in kernel threads (`napi/flexs-ID`), pinned
/// to the server CPUs, the client end's to the client CPUs. `receiveCPUSeconds` is the
/// server end's threads' CPU time, the server core's share that no server process shows.
///
/// Needs root, `ip` (iproute2) and `ethtool`. The names are fixed: one pair at a time;
/// what a killed run left is deleted before a new pair is made, and `remove()` deletes
/// the pair and the namespace.
final class VethLink {
    static let namespace = "flexbench-compare"
    static let clientInterface = "flexc"
    static let serverInterface = "flexs"
    static let clientAddress = IPv4Address(198, 18, 9, 1)
    static let serverAddress = IPv4Address(198, 18, 9, 2)
    /// Whether a pair was made and not yet removed (for the signal handler).
    static let isMade = Atomic<Bool>(false)

    let serverCPU: String?
    let clientCPU: String?
    /// The server end's NAPI threads, as `pinReceiveThreads` last found them.
    private(set) var serverThreads: [Int32] = []

    /// Makes the pair and pins each end's receive threads (`serverCPU`, `clientCPU`:
    /// taskset lists; nil leaves them where the kernel runs them).
    init(serverCPU: String?, clientCPU: String?) throws {
        guard getuid() == 0 else { throw RuntimeFailure("--link veth needs root (network namespaces)") }
        for tool in ["ip", "ethtool"] where SystemCommand.path(of: tool) == nil {
            throw RuntimeFailure("--link veth needs `\(tool)` (apt-get install \(tool == "ip" ? "iproute2" : tool))")
        }
        self.serverCPU = serverCPU
        self.clientCPU = clientCPU
        Self.remove()
        let ns = Self.namespace, c = Self.clientInterface, s = Self.serverInterface
        try SystemCommand.run("ip", "netns", "add", ns)
        Self.isMade.store(true, ordering: .relaxed)
        do {
            try SystemCommand.run("ip", "link", "add", c, "type", "veth", "peer", "name", s, "netns", ns)
            try SystemCommand.run("ip", "addr", "add", "\(Self.clientAddress)/24", "dev", c)
            try SystemCommand.run("ip", "netns", "exec", ns, "ip", "addr", "add", "\(Self.serverAddress)/24", "dev", s)
            for (prefix, interface) in [([String](), c), (["ip", "netns", "exec", ns], s)] {
                try SystemCommand.run(prefix + ["ethtool", "-K", interface, "gro", "on", "tso", "off", "gso", "off"])
                try SystemCommand.run(prefix + ["ip", "link", "set", interface, "up"])
                try SystemCommand.run(prefix + ["sh", "-c", "echo 1 > /sys/class/net/\(interface)/threaded"])
            }
            try SystemCommand.run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
            try pinReceiveThreads()
        } catch {
            Self.remove()
            throw error
        }
    }

    /// Finds both ends' NAPI threads and pins them to their sides' CPUs. Attaching or
    /// detaching an XDP program may make new ones: call again after a server starts.
    func pinReceiveThreads() throws {
        for (interface, cpus) in [(Self.serverInterface, serverCPU), (Self.clientInterface, clientCPU)] {
            let threads = Self.receiveThreads(of: interface)
            guard !threads.isEmpty else {
                throw RuntimeFailure("--link veth: \(interface) has no NAPI thread (veth receives in NAPI threads from Linux 5.13 on)")
            }
            if interface == Self.serverInterface { serverThreads = threads }
            if let cpus { for pid in threads { try ServerProcess.pin(pid, cpus) } }
        }
    }

    /// CPU time, in seconds, of the server end's receive threads.
    var receiveCPUSeconds: Double {
        serverThreads.reduce(0) { $0 + ServerProcess.cpuSeconds(of: $1) }
    }

    /// The command that runs `arguments` in the servers' namespace.
    static func inNamespace(_ arguments: [String]) -> (path: String, arguments: [String]) {
        (SystemCommand.path(of: "ip") ?? "/usr/sbin/ip", ["netns", "exec", namespace] + arguments)
    }

    /// Deletes the pair and the namespace, if there are. (Deleting the client end takes
    /// the pair at once; a deleted namespace takes its end only later, in the
    /// background.)
    static func remove() {
        _ = try? SystemCommand.run("ip", "link", "del", clientInterface)
        _ = try? SystemCommand.run("ip", "netns", "del", namespace)
        isMade.store(false, ordering: .relaxed)
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
}
