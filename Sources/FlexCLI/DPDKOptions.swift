import ArgumentParser
import FlexIO

/// `--eal` and `--dpdk-device`: the DPDK ethdev a command runs on, the same two flags
/// (and one start-up) in every executable that can use DPDK.
public struct DPDKOptions: ParsableArguments, Sendable {
    @Option(parsing: .unconditional, help: ArgumentHelp("DPDK EAL arguments, blank-separated, in one quoted word (with --io dpdk).", discussion: """
        e.g. "--no-huge --no-pci -m 256 --vdev=net_af_packet0,iface=veth0,qpairs=2" or \
        "--no-huge --no-pci -m 256 --vdev=net_memif0,role=server,socket=/tmp/kvs.sock,socket-abstract=no".
        """))
    public var eal: String?
    @Option(name: [.customLong("dpdk-device"), .customLong("device")],
            help: "The ethdev (with --io dpdk): a --vdev name or a port id (default 0).")
    public var dpdkDevice: String?

    public init() {}

    /// Whether either flag was given.
    public var isGiven: Bool { eal != nil || dpdkDevice != nil }

    /// Refuses the flags for a run that uses no DPDK port.
    public func refuse(unless what: String = "--io dpdk") throws {
        guard !isGiven else { throw ValidationError("--eal and --dpdk-device need \(what)") }
    }

    /// Starts DPDK (once per process) with `--eal`, or `defaultEAL` when the flag was
    /// not given, and opens `--dpdk-device` (else `defaultDevice`, else port 0) with
    /// `configuration`. Failures are runtime failures (one line, no usage text).
    public func openPort(configuration: DPDKPort.Configuration = .init(), defaultEAL: [String]? = nil,
                         defaultDevice: String? = nil) throws -> DPDKPort {
        guard let arguments = eal.map(DPDKEnvironment.split) ?? defaultEAL else {
            throw ValidationError("--io dpdk needs --eal \"<EAL arguments>\", e.g. --eal \"--no-huge --no-pci -m 256 --vdev=net_af_packet0,iface=eth1\"")
        }
        do {
            try DPDKEnvironment.initialize(arguments: arguments)
            return try DPDKPort(device: dpdkDevice ?? defaultDevice ?? "0", configuration: configuration)
        } catch {
            throw RuntimeFailure("\(error)")
        }
    }
}

extension NameSpecification {
    /// `--output` (also `--out`, as earlier versions spelled it): the file a command
    /// writes, named alike in every executable.
    public static var output: NameSpecification { [.customLong("output"), .customLong("out")] }
    /// `--duration` (also `--seconds`, as earlier versions spelled it): how long a
    /// command runs.
    public static var duration: NameSpecification { [.customLong("duration"), .customLong("seconds")] }
}
