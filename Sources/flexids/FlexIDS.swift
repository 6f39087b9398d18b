import ArgumentParser
import FlexIDS
import Foundation

/// flexids: Snort rules -> port groups -> flow-group profile -> partition -> steering.
@main
struct FlexIDSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flexids",
        abstract: "An IDS steering partitioner and evaluator for Snort rule sets.",
        subcommands: [CheckRules.self])
}

/// `flexids rules`: load a rule set and report what was loaded and what was skipped.
struct CheckRules: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Load Snort rules and report how many loaded and why the others were skipped.",
        discussion: """
            Reads Snort 2.9 rules (header with address and port lists, ranges, negation and \
            $VARIABLES; content with |hex|, nocase, offset, depth, distance, within, negation, \
            fast_pattern; pcre via PCRE2 with JIT; flow; msg, sid, rev, classtype, reference). \
            A rule using anything else is skipped with a warning naming file and line.
            """)

    @Option(name: .long, help: "Rule file (repeat for several).") var rules: [String]
    @Option(help: "Snort variables file (ipvar/portvar/var lines), e.g. ../shared/data/rules/snort-vars.conf.") var vars: String?
    @Option(help: "Skipped rules to list one by one (the summary counts them all; --warnings=-1 lists all).") var warnings = 20

    func run() throws {
        let start = Date()
        var variables = RuleVariables()
        do {
            if let vars { variables = try RuleVariables.load(path: vars) }
            let set = try RuleSet.load(paths: rules, variables: variables)
            let seconds = Date().timeIntervalSince(start)
            for s in set.skipped.prefix(warnings < 0 ? Int.max : warnings) { FileHandle.standardError.write(Data("warning: \(s)\n".utf8)) }
            if warnings >= 0 && set.skipped.count > warnings {
                FileHandle.standardError.write(Data("warning: \(set.skipped.count - warnings) more skipped rules (--warnings=-1 lists them)\n".utf8))
            }
            let pcres = set.rules.reduce(0) { n, r in n + r.detection.filter { if case .pcre = $0 { true } else { false } }.count }
            print(String(format: "rules: loaded %d, skipped %d (%d pcre compiled) in %.2f s", set.rules.count, set.skipped.count, pcres, seconds))
            for s in set.skipSummary { print("  skipped \(s.count): \(s.reason) (first at \(s.first))") }
        } catch {
            throw ValidationError("\(error)")
        }
    }
}
