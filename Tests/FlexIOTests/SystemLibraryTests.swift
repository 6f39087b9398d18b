import CPCRE2
import Testing

/// CPCRE2 is the shim FlexIDS matches `pcre` rule options with: compile with JIT and
/// match through the `_8` entry points.
@Suite struct SystemLibraryTests {
    @Test func pcre2CompilesWithJITAndMatches() throws {
        let pattern = Array("^GET\\s+/admin".utf8)
        var error: Int32 = 0
        var offset = 0
        let code = try #require(pattern.withUnsafeBufferPointer {
            pcre2_compile_8($0.baseAddress, $0.count, UInt32(PCRE2_CASELESS), &error, &offset, nil)
        })
        defer { pcre2_code_free_8(code) }
        #expect(pcre2_jit_compile_8(code, UInt32(PCRE2_JIT_COMPLETE)) == 0)
        let data = pcre2_match_data_create_from_pattern_8(code, nil)
        defer { pcre2_match_data_free_8(data) }
        func matches(_ s: String) -> Bool {
            Array(s.utf8).withUnsafeBufferPointer { pcre2_match_8(code, $0.baseAddress, $0.count, 0, 0, data, nil) >= 0 }
        }
        #expect(matches("get   /ADMIN/panel"))
        #expect(!matches("POST /admin"))
    }

    @Test func pcre2RejectsBrokenPatterns() {
        let pattern = Array("(unclosed".utf8)
        var error: Int32 = 0
        var offset = 0
        let code = pattern.withUnsafeBufferPointer { pcre2_compile_8($0.baseAddress, $0.count, 0, &error, &offset, nil) }
        #expect(code == nil)
        #expect(error != 0)
    }
}
