@testable import FlexIDS
import Foundation
import Testing

/// Snort's documented semantics as data: each case in `Cases/cases.json` is a capture
/// crafted with scapy (`Cases/make_cases.py`), rules, and the alerts Snort 2.9's manual
/// says they raise, as (packet number, sid) in packet order, written from the manual
/// (quoted in the case), not from what flexids does. One instance inspects the capture,
/// then the rate filters run, as `flexids run` does.
@Suite struct SnortSemanticsCorpusTests {
    struct Case: Decodable, Sendable, CustomTestStringConvertible {
        var name: String
        var manual: String
        var capture: String
        var rules: [String]
        var expected: [[Int]]
        /// Snort's `checksum_mode`: `all` (its default) or `none`.
        var checksum_mode: String
        var testDescription: String { name }
    }

    static let directory = "Tests/FlexIDSTests/Cases"

    static let cases: [Case] = {
        guard let data = FileManager.default.contents(atPath: "\(directory)/cases.json"),
              let cases = try? JSONDecoder().decode([Case].self, from: data) else { return [] }
        return cases
    }()

    @Test func theCorpusIsThere() {
        #expect(Self.cases.count >= 26, "run from the package root; regenerate with Cases/make_cases.py")
    }

    @Test(arguments: cases, [MatcherChoice.hyperscan, .dfa]) func alertsAsTheManualSays(_ c: Case, matcher: MatcherChoice) throws {
        var variables = RuleVariables()
        variables.define("HOME_NET", "10.0.0.0/8")
        variables.define("EXTERNAL_NET", "any")
        var set = RuleSet()
        set.add(c.rules.joined(separator: "\n"), file: "\(c.name).rules", variables: variables)
        #expect(set.skipped.isEmpty, "\(set.skipped)")
        let engine = DetectionEngine(rules: set.rules, checksums: try #require(DetectionEngine.ChecksumMode(rawValue: c.checksum_mode)),
                                     matcher: matcher)
        let trace = try Trace(path: "\(Self.directory)/\(c.capture)")
        let inspector = Inspector(engine: engine)
        for i in trace.records.indices { inspector.inspect(trace, record: i) }
        inspector.finish()
        #expect(inspector.counters.undecodable == 0)
        #expect(trace.error == nil)
        let alerts = ThresholdFilter.apply(inspector.takeAlerts(), rules: engine.rules)
        let got = alerts.map { [$0.packet, Int(engine.rules[Int($0.rule)].sid)] }
        #expect(got == c.expected, "\(c.manual)")
    }
}
