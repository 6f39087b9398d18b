// swift-tools-version:6.1
//
// Flex: application co-design servers over a software FlexNIC steering layer.
//
// Module layering (arrows point one way):
//   apps (flexkvs, flexids, flexstorm, flexbench, FlexKVS, FlexIDS, FlexStorm) -> FlexNIC (steering) -> FlexIO (ports) -> FlexWire (headers)
//   FlexConfig (TOML: steering programs, the input check) -> FlexNIC, used by FlexStorm, the executables and tests
//   C shims (CDPDK, CPcap, CPCRE2, CZlib, CHyperscan, CBPF, CFlexSys) sit under FlexIO and the apps that need them.
//   BPFProgramPlugin compiles FlexKVS's eBPF program (Sources/FlexKVS/XDP) at build time.
import PackageDescription

/// DPDK 22.11 from Debian: headers are parsed only by the shim's .c file (see DESIGN.md,
/// "Engineering facts"); SwiftPM's pkgConfig cannot read Debian's libdpdk.pc.
let dpdkCFlags: [String] = [
    "-I/usr/include/dpdk", "-I/usr/include/x86_64-linux-gnu/dpdk",
    "-include", "rte_config.h", "-march=corei7", "-O3",
]

/// Release builds of the packet path skip dynamic exclusivity checks (each costs a
/// runtime call with a thread-local lookup); debug builds and tests keep them.
let hotPath: [SwiftSetting] = [.unsafeFlags(["-enforce-exclusivity=unchecked"], .when(configuration: .release))]

let package = Package(
    name: "Flex",
    products: [
        .executable(name: "flexkvs", targets: ["flexkvs"]),
        .executable(name: "flexbench", targets: ["flexbench"]),
        .executable(name: "flexids", targets: ["flexids"]),
        .executable(name: "flexstorm", targets: ["flexstorm"]),
        .library(name: "FlexWire", targets: ["FlexWire"]),
        .library(name: "FlexIO", targets: ["FlexIO"]),
        .library(name: "FlexNIC", targets: ["FlexNIC"]),
        .library(name: "FlexConfig", targets: ["FlexConfig"]),
        .library(name: "FlexKVS", targets: ["FlexKVS"]),
        .library(name: "FlexIDS", targets: ["FlexIDS"]),
        .library(name: "FlexStorm", targets: ["FlexStorm"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    ],
    targets: [
        // MARK: C shims
        .target(
            name: "CDPDK",
            cSettings: [.unsafeFlags(dpdkCFlags)],
            linkerSettings: [
                .linkedLibrary("rte_ethdev"), .linkedLibrary("rte_mbuf"),
                .linkedLibrary("rte_mempool"), .linkedLibrary("rte_ring"),
                .linkedLibrary("rte_eal"), .linkedLibrary("rte_net"),
                .linkedLibrary("rte_kvargs"),
            ]
        ),
        .systemLibrary(name: "CPcap", pkgConfig: "libpcap", providers: [.apt(["libpcap-dev"])]),
        .systemLibrary(name: "CPCRE2", pkgConfig: "libpcre2-8", providers: [.apt(["libpcre2-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        /// libbpf, for FlexKVS's XDP reply offload.
        .target(name: "CBPF", linkerSettings: [.linkedLibrary("bpf")]),
        .target(name: "CFlexSys"),
        /// Hyperscan, loaded with dlopen so that flexids runs (on its own automaton) without it.
        .target(name: "CHyperscan"),

        // MARK: Libraries
        .target(name: "FlexWire", swiftSettings: hotPath),
        .target(name: "FlexIO", dependencies: ["FlexWire", "CDPDK", "CPcap", "CFlexSys"], swiftSettings: hotPath),
        .target(name: "FlexNIC", dependencies: ["FlexWire", "FlexIO", "CFlexSys"], swiftSettings: hotPath),
        /// What the four command lines share: runtime failures, termination signals, DPDK flags.
        .target(name: "FlexCLI", dependencies: ["FlexIO", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        /// Steering programs as TOML files, read and written (apart, so FlexNIC needs no TOML).
        .target(name: "FlexConfig", dependencies: ["FlexNIC", "FlexWire", .product(name: "TOMLKit", package: "TOMLKit")]),
        .target(
            name: "FlexKVS",
            dependencies: ["FlexNIC", "FlexIO", "FlexWire", "CFlexSys", "CBPF", .product(name: "Logging", package: "swift-log")],
            exclude: ["XDP"],  // eBPF sources, compiled by BPFProgramPlugin
            swiftSettings: hotPath,
            plugins: ["BPFProgramPlugin"]
        ),
        .target(name: "FlexIDS", dependencies: ["FlexNIC", "FlexIO", "FlexWire", "CPCRE2", "CHyperscan", "CZlib", "CFlexSys"], swiftSettings: hotPath),
        .target(
            name: "FlexStorm",
            dependencies: ["FlexNIC", "FlexIO", "FlexWire", "FlexConfig", "CFlexSys"],
            swiftSettings: hotPath
        ),

        // MARK: Build tools
        /// Compiles a target's XDP/*.bpf.c with clang's bpf target and embeds the objects.
        .plugin(name: "BPFProgramPlugin", capability: .buildTool(), path: "Sources/BPFProgramPlugin"),

        // MARK: Executables
        .executableTarget(
            name: "flexkvs",
            dependencies: [
                "FlexKVS", "FlexCLI", "FlexConfig", "FlexNIC", "FlexIO", "FlexWire", "CFlexSys", .product(name: "Logging", package: "swift-log"),
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .executableTarget(
            name: "flexids",
            dependencies: ["FlexIDS", "FlexNIC", "FlexConfig", "FlexCLI", "FlexIO", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        .executableTarget(
            name: "flexstorm",
            dependencies: ["FlexStorm", "FlexIO", "FlexCLI", .product(name: "ArgumentParser", package: "swift-argument-parser")]
        ),
        /// libFuzzer targets for every parser (Scripts/fuzz.sh builds and runs them).
        .executableTarget(
            name: "flexfuzz",
            dependencies: ["FlexConfig", "FlexIDS", "FlexIO", "FlexKVS", "FlexNIC", "FlexStorm", "FlexWire"]
        ),
        .executableTarget(
            name: "flexbench",
            dependencies: [
                "FlexKVS", "FlexNIC", "FlexConfig", "FlexCLI", "FlexIDS", "FlexIO", "FlexWire", "CFlexSys", "FlexStorm",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ]
        ),

        // MARK: Tests
        .target(name: "FlexTestSupport", dependencies: ["FlexWire", "CFlexSys"], path: "Tests/FlexTestSupport"),
        .testTarget(name: "FlexWireTests", dependencies: ["FlexWire", "FlexTestSupport"]),
        .testTarget(name: "FlexNICTests", dependencies: ["FlexNIC", "FlexConfig", "FlexIO", "FlexWire", "FlexTestSupport"]),
        .testTarget(name: "FlexKVSTests", dependencies: ["FlexKVS", "FlexConfig", "FlexIO", "FlexWire", "FlexTestSupport"]),
        .testTarget(name: "FlexIDSTests", dependencies: ["FlexIDS", "FlexConfig", "FlexTestSupport"],
                    exclude: ["Cases"]),  // the corpus: captures, rules, expected alerts (data, read at run time)
        .testTarget(name: "FlexStormTests", dependencies: ["FlexStorm", "FlexNIC", "FlexConfig", "FlexIO", "FlexWire", "FlexTestSupport"]),
        .testTarget(
            name: "FlexIOTests",
            dependencies: ["FlexIO", "FlexNIC", "FlexWire", "CDPDK", "CPCRE2", "CFlexSys", "FlexTestSupport"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
