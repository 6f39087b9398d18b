import FlexWire
import Foundation
import Testing
@testable import FlexStorm

@Suite struct TupleTests {
    @Test func userNamesKeepTheirBytesAndOrder() throws {
        let a = try #require(UserName("alice")), b = try #require(UserName("alicf")), c = try #require(UserName("ali"))
        #expect(a.description == "alice" && a.length == 5)
        #expect(c < a && a < b)
        let long = try #require(UserName(String(repeating: "x", count: 24)))
        #expect(long.length == 24 && long.description.count == 24)
        #expect(UserName("") == nil)
        #expect(UserName(String(repeating: "y", count: 25)) == nil)
        #expect(UserName("a\u{0}b") == nil)
        // The grouping hash is a pure function of the bytes (the same in every process).
        #expect(a.groupingHash == UserName("alice")!.groupingHash && a.groupingHash != b.groupingHash)
    }

    @Test func wireRoundTrip() throws {
        var t = Tuple(destination: 7, source: 3, kind: .rank, user: UserName("kapetafa")!, count: 2450, position: 2,
                      listLength: 10, created: 123_456_789)
        t.sent = 223_456_789
        var wire = [UInt8](repeating: 0xEE, count: Tuple.wireLength)
        wire.withUnsafeMutableBytes { t.encode(to: $0.baseAddress!) }
        #expect(wire[0] == 0 && wire[1] == 7 && wire[4] == 3 && wire[56..<64].allSatisfy { $0 == 0 })
        let back = try #require(wire.withUnsafeBytes { Tuple(payload: $0.baseAddress!, length: 64, arrival: 99) })
        var expected = t
        expected.arrived = 99
        #expect(back == expected)
    }

    @Test func malformedPayloadsAreRefused() {
        let t = Tuple(destination: 1, source: 2, kind: .user, user: UserName("bob")!)
        var wire = [UInt8](repeating: 0, count: Tuple.wireLength)
        wire.withUnsafeMutableBytes { t.encode(to: $0.baseAddress!) }
        func decode(_ w: [UInt8], length: Int? = nil) -> Tuple? {
            w.withUnsafeBytes { Tuple(payload: $0.baseAddress!, length: length ?? w.count, arrival: 0) }
        }
        #expect(decode(wire) != nil)
        #expect(decode(wire, length: 63) == nil)  // truncated
        var kind = wire
        kind[4] = 9
        #expect(decode(kind) == nil)  // unknown kind
        var empty = wire
        for i in 32..<56 { empty[i] = 0 }
        #expect(decode(empty) == nil)  // no name on a user tuple
        var hole = wire
        hole[40] = 0x41  // a byte after the name's end
        #expect(decode(hole) == nil)
        var eos = empty
        eos[4] = Tuple.Kind.endOfStream.rawValue
        #expect(decode(eos)?.kind == .endOfStream)  // end of stream carries no name
    }
}

@Suite struct WindowAndRankingTests {
    @Test func slidingWindowForgetsTheOldestSlot() {
        var w = SlidingWindowCounter(slots: 3)
        let a = UserName("a")!, b = UserName("b")!
        w.increment(a); w.increment(a); w.increment(b)
        var changed: [String: UInt64] = [:]
        w.takeChanged { changed[$0.description] = $1 }
        #expect(changed == ["a": 2, "b": 1])
        w.advance()
        w.increment(b)
        w.advance()
        changed = [:]
        w.takeChanged { changed[$0.description] = $1 }
        #expect(changed == ["b": 2])  // nothing left the window yet
        w.advance()  // the first slot leaves: a's 2 and b's first 1
        changed = [:]
        w.takeChanged { changed[$0.description] = $1 }
        #expect(changed == ["a": 0, "b": 1])
        #expect(w.total(of: a) == 0 && w.total(of: b) == 1)
    }

    @Test func topNOrdersByCountThenName() {
        let entries = [("d", 5), ("a", 7), ("c", 5), ("b", 9), ("e", 0), ("f", 1)].map {
            RankEntry(user: UserName($0.0)!, count: UInt64($0.1))
        }
        #expect(RankEntry.top(3, of: entries).map(\.description) == ["b 9", "a 7", "c 5"])
        #expect(RankEntry.top(10, of: entries).count == 5)  // zero counts are not ranked
    }

    @Test func generatedTracesAreReproducibleAndSkewed() throws {
        let t1 = UserTrace.generate(users: 500, tuples: 5_000, exponent: 1.0, seed: 7)
        let t2 = UserTrace.generate(users: 500, tuples: 5_000, exponent: 1.0, seed: 7)
        #expect(t1 == t2 && t1.count == 5_000)
        #expect(UserTrace.generate(users: 500, tuples: 5_000, exponent: 1.0, seed: 8) != t1)
        let top = UserTrace.exactTopN(t1, n: 2)
        // Zipf(1) over 500 users: the top user has about 1/H(500) = 15 % of the tuples.
        #expect(top[0].count > 500 && top[0].count > 2 * top[1].count / 3 * 1)
    }

    @Test func traceFilesNameTheBadLine() throws {
        let path = "/tmp/flexstorm-trace-\(getpid()).txt"
        try "# users\nalice\n\nbob\n\(String(repeating: "z", count: 30))\n".write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        #expect(throws: TraceError.self) { try UserTrace.load(path: path) }
        do { _ = try UserTrace.load(path: path) } catch { #expect("\(error)".contains(":5:")) }
        try "alice\nbob\n".write(toFile: path, atomically: true, encoding: .utf8)
        #expect(try UserTrace.load(path: path).map(\.description) == ["alice", "bob"])
    }
}
