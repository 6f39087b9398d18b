/// Which multi-pattern matcher the port groups compile their fast patterns into,
/// chosen once per engine.
public enum MatcherChoice: String, Sendable, CaseIterable {
    /// Hyperscan where its library loads, else `dfa`.
    case auto
    /// Hyperscan's literal matcher (`HyperscanDatabase`): small databases, SIMD scanning.
    case hyperscan
    /// The project's own full Aho-Corasick DFA (`MultiPatternMatcher`): 1 KiB per state.
    case dfa
}
