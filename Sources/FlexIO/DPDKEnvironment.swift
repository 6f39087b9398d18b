import CDPDK
import Synchronization

/// DPDK's Environment Abstraction Layer, initialised at most once per process (EAL
/// cannot be initialised twice). On machines without NICs or hugepages pass
/// `--no-huge --no-pci -m 256 --file-prefix=<unique>` and `--vdev=...` arguments.
public enum DPDKEnvironment {
    static let state = Mutex<[String]?>(nil)

    /// Initialises EAL with `arguments` (without a program name). A second call with
    /// the same arguments does nothing; with different ones it throws.
    public static func initialize(arguments: [String]) throws {
        try state.withLock { current in
            if let current {
                guard current == arguments else {
                    throw PortError("DPDK EAL is already initialised with \(current.joined(separator: " "))")
                }
                return
            }
            // EAL keeps (and permutes) argv: the strings live as long as the process.
            var argv = (["flex"] + arguments).map { strdup($0) }
            let rc = argv.withUnsafeMutableBufferPointer { cdpdk_eal_init(Int32($0.count), $0.baseAddress) }
            guard rc >= 0 else {
                throw PortError("DPDK EAL init failed (\(String(cString: cdpdk_strerror(cdpdk_errno())))) with: \(arguments.joined(separator: " "))")
            }
            current = arguments
        }
    }

    public static var isInitialized: Bool { state.withLock { $0 != nil } }

    /// Splits an `--eal "<args>"` string at blanks (no quoting: EAL arguments have none).
    public static func split(_ text: String) -> [String] {
        text.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
    }

    /// Runs `body` on the calling thread registered with EAL as an lcore, so its mbuf
    /// allocations and frees go through the mempools' per-lcore caches rather than the
    /// shared ring (a thread that polls a DPDK port should run this way).
    public static func asLcore<T>(_ body: () throws -> T) rethrows -> T {
        let registered = cdpdk_thread_register() == 0
        defer { if registered { cdpdk_thread_unregister() } }
        return try body()
    }

    /// Ports EAL probed.
    public static var portCount: Int { Int(cdpdk_port_count()) }
}

#if canImport(Glibc)
import Glibc
#endif
