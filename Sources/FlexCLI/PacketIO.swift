import ArgumentParser

/// `--io` of the servers: where packets come and go. The same flag and values in
/// flexkvs and flexstorm (flexids reads a trace instead: `--io pcap|dpdk`).
public enum PacketIO: String, CaseIterable, Sendable, ExpressibleByArgument {
    /// Kernel sockets.
    case socket
    /// A DPDK ethdev (`--eal`, `--dpdk-device`).
    case dpdk
}
