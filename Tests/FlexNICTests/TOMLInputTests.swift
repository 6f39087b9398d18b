import FlexConfig
import FlexNIC
import Testing

/// Regression tests from fuzzing (`Scripts/fuzz.sh program`): TOMLKit's parser asserts
/// (and in release builds assumes) on a table name that starts outside ASCII; such
/// text is refused, with its line, before the parser sees it.
@Suite struct TOMLInputTests {
    @Test func aTableNameOutsideASCIIIsRefusedNotParsed() {
        #expect(throws: TOMLInputError.self) { try TOMLInput.check("[\u{F5}") }
        do {
            _ = try ProgramFile.parse("name = \"x\"\n[\u{F5}", source: "fuzz.toml")
            Issue.record("parsed")
        } catch {
            #expect("\(error)" == "fuzz.toml: line 2: a non-ASCII character outside a string or comment")
        }
    }

    @Test func nonASCIIInStringsAndCommentsIsTOML() throws {
        try TOMLInput.check("# Grüße\nname = \"Ünïcode\" # é\nx = 'ø'\ny = \"\"\"\nñ\n\"\"\"\nz = '''\nß'''\n[a]\n")
        #expect(throws: TOMLInputError.self) { try TOMLInput.check("a = \"x\"\nb = ü\n") }
        #expect(throws: TOMLInputError.self) { try TOMLInput.check("a = \"x\\\"ü\n[é]") }
    }
}
