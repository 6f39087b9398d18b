import FlexConfig
import FlexNIC
import Foundation
import Testing

/// Regression tests from fuzzing (`Scripts/fuzz.sh program`, `storm-config`): TOMLKit's
/// parser asserts (and in release builds assumes) that a key starts with a bare-key
/// character or a quote; such text is refused, with its line, before it sees it.
@Suite struct TOMLInputTests {
    @Test(arguments: ["[\u{F5}", "[~", "[[~]]", "[a.~]", "~ = 1", "a = { ~ = 1 }", "a = { b = 1, ~ = 2 }", "a = \"x\"\nb = ü",
                       "s=[}\"\"", "a = [1,,2]", "a = ]", "a = {b}", "[a", "a = [1, }", "x"])
    func keysTheParserCannotTakeAreRefused(_ text: String) {
        #expect(throws: TOMLInputError.self, "\(text)") { try TOMLInput.check(text) }
    }

    @Test func theFindingsAreErrorsWithTheirLine() {
        do {
            _ = try ProgramFile.parse("name = \"x\"\n[\u{F5}", source: "fuzz.toml")
            Issue.record("parsed")
        } catch {
            #expect("\(error)" == "fuzz.toml: line 2: a key must be bare (A-Z a-z 0-9 _ -) or quoted")
        }
    }

    /// Valid TOML passes: every file the project ships, and the corners of the syntax.
    @Test func validDocumentsPass() throws {
        try TOMLInput.check("""
            # Grüße
            name = "Ünïcode" # é
            "quoted key" = 'ø'
            a.b-c."d e" = [1, [2, 3], { x = 1, 'y' = "]" }]
            y = \"\"\"
            ñ [~
            \"\"\"
            z = '''
            ß'''
            t = { }
            [a]
            [[ b . "c" ]]
            """)
        let configs = FileManager.default.enumerator(atPath: "Configs")?.compactMap { $0 as? String }.filter { $0.hasSuffix(".toml") } ?? []
        #expect(configs.count >= 10)
        for path in configs {
            let text = try String(contentsOfFile: "Configs/\(path)", encoding: .utf8)
            #expect(throws: Never.self, "\(path)") { try TOMLInput.check(text) }
        }
    }
}

extension TOMLInputTests {
    /// From fuzzing: a payload word of 9 bytes overflowed computing its limit.
    @Test func payloadWordsOfOtherWidthsAreRefused() {
        for width in ["3", "9", "9223372036854775807"] {
            #expect(throws: ProgramError.self) {
                try ProgramFile.parse("name = \"x\"\nqueues = 1\n[[stage]]\nname = \"s\"\nmatch = { \"payload[0:\(width)]\" = 1 }\nactions = [\"drop\"]\n")
            }
        }
    }
}

extension TOMLInputTests {
    /// From fuzzing: a name with a control character (`\f` in the file) was written back
    /// unescaped, which TOML refuses.
    @Test func namesWithControlCharactersSurviveWritingAndReading() throws {
        let p = try ProgramFile.parse("name = \"r\\flect\\u0001\\\"q\\\\\"\nqueues = 1\n[[stage]]\nname = \"s\\t\"\nmatch = { ether_type = 2048 }\nactions = [\"drop\"]\n")
        let again = try ProgramFile.parse(try ProgramFile.write(p))
        #expect(again.name == "r\u{0C}lect\u{01}\"q\\" && again.stages[0].name == "s\t")
        #expect(ProgramFile.canonical(again) == ProgramFile.canonical(p))
    }
}
