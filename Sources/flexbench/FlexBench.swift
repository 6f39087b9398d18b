import ArgumentParser

#if canImport(Glibc)
import Glibc
#endif

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

    /// Runs with no signal blocked: the servers `compare` starts inherit this process's
    /// mask, and one started from a thread that blocks SIGTERM (a test harness's) would
    /// otherwise never stop.
    static func main() {
        var none = sigset_t()
        sigemptyset(&none)
        sigprocmask(SIG_SETMASK, &none, nil)
        main(nil)
    }
}
