import ArgumentParser

@main
struct FlexBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flexbench",
        abstract: "Load generators, benchmarks and port tools for the Flex servers.",
        discussion: """
            Benchmarks print figures (ns per packet, cycles, ratios); they assert nothing. \
            Run them from a release build: swift run -c release flexbench micro
            """,
        subcommands: [Micro.self, KVSBench.self, Compare.self, Rebalance.self, HitRatio.self, StormBench.self, Reflect.self, UDPPing.self, Programs.self])
}
