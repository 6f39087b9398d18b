@testable import FlexKVS
import FlexWire
import FlexTestSupport
import Testing

/// Seeded streams of hostile requests (command words with numbers past every bound,
/// signs, NULs, lone CR and LF, meta flags, binary headers whose lengths lie, random
/// bytes), fed to a session in random pieces as a TCP connection delivers them. Nothing
/// may trap; every run serves all the complete requests it has (a second run without new
/// input does nothing) or ends the session.
@Suite(.tags(.integration)) struct HostileInputIntegrationTests {
    static let words: [[UInt8]] = [
        "get", "gets", "gat", "gats", "set", "add", "cas", "append", "prepend", "replace", "incr", "decr", "delete", "touch",
        "flush_all", "verbosity", "stats", "stats items", "stats slabs", "stats cachedump 1 0", "lru_crawler metadump all",
        "cache_memlimit", "version", "mn", "mg", "ms", "md", "ma", "me", "noreply", "quit", "shutdown", "bget",
    ].map { Array($0.utf8) }
    static let numbers: [[UInt8]] = [
        "0", "1", "-1", "-0", "+5", "4294967295", "4294967296", "2147483647", "2147483648", "-2147483649",
        "18446744073709551615", "18446744073709551616", "99999999999999999999999", "9223372036854775808", "abc", "",
        "1048576", "65536", " ", "\t7",
    ].map { Array($0.utf8) }
    static let metaFlags: [[UInt8]] = ["v", "k", "q", "O123", "N30", "T-1", "R5", "C0", "C18446744073709551616", "D-1", "J", "MX",
                                       "M", "b", "I", "F4294967296", "s", "t", "c", "f", "h", "l", "u", "Ox" + String(repeating: "y", count: 40)]
        .map { Array($0.utf8) }

    static func textRequest(_ rng: inout SplitMix64) -> [UInt8] {
        func pick(_ a: [[UInt8]]) -> [UInt8] { a[Int(rng.next() % UInt64(a.count))] }
        var out = pick(words)
        for _ in 0..<Int(rng.next() % 8) {
            out += rng.next() % 4 == 0 ? [0x20, 0x20] : [0x20]
            switch rng.next() % 5 {
            case 0: out += pick(numbers)
            case 1: out += pick(metaFlags)
            case 2: out += Array("k\(rng.next() % 8)".utf8)
            case 3: out += [UInt8](repeating: 0x6B, count: Int(rng.next() % 300))  // keys around 250 bytes
            default: out += (0..<Int(rng.next() % 6)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
        }
        out += [[0x0D, 0x0A], [0x0A], [0x0D], [0x00, 0x0D, 0x0A], [0x0D, 0x0A]][Int(rng.next() % 5)]
        if rng.next() % 3 == 0 {  // a data block, of the announced length or not
            out += [UInt8](repeating: 0x31, count: Int(rng.next() % 40)) + [0x0D, 0x0A]
        }
        return out
    }

    static func binaryRequest(_ rng: inout SplitMix64) -> [UInt8] {
        var h = [UInt8](repeating: 0, count: 24)
        h[0] = 0x80
        h[1] = UInt8(truncatingIfNeeded: rng.next() % 0x28)
        let keyLength = Int(rng.next() % 300), extras = [0, 4, 8, 20, 255][Int(rng.next() % 5)]
        let value = Int(rng.next() % 64)
        var body = keyLength + extras + value
        if rng.next() % 8 == 0 { body = Int(truncatingIfNeeded: rng.next() % 0x1_0000_0000) }  // a length that lies
        h[2] = UInt8(keyLength >> 8); h[3] = UInt8(keyLength & 0xFF); h[4] = UInt8(extras)
        for i in 0..<4 { h[8 + i] = UInt8(truncatingIfNeeded: body >> (24 - 8 * i)) }
        for i in 16..<24 { h[i] = rng.next() % 4 == 0 ? UInt8(truncatingIfNeeded: rng.next()) : 0 }
        return h + (0..<min(extras + keyLength + value, 400)).map { _ in UInt8(truncatingIfNeeded: rng.next() % 128) }
    }

    @Test(arguments: [UInt64(1), 2, 3, 4])
    func hostileStreamsNeverTrapAndAlwaysProgress(seed: UInt64) throws {
        var c = KVStore.Configuration()
        c.memoryLimit = 8 << 20
        c.segmentSize = 64 << 10
        c.maxItemSize = 16 << 10
        let ctx = KVSContext(store: KVStore(c), threads: 1)
        var rng = SplitMix64(seed: seed)
        for _ in 0..<1_500 {
            let s = Session()
            let binary = rng.next() % 3 == 0
            var stream: [UInt8] = []
            for _ in 0..<Int(1 + rng.next() % 20) {
                stream += binary ? Self.binaryRequest(&rng) : Self.textRequest(&rng)
            }
            if rng.next() % 5 == 0 { stream += (0..<Int(rng.next() % 3000)).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
            var offset = 0
            while offset < stream.count && !s.closing {
                let n = min(stream.count - offset, Int(1 + rng.next() % 700))
                stream[offset..<(offset + n)].withUnsafeBytes { s.receive($0) }
                offset += n
                ProtocolHandler.run(s, ctx)
                #expect(s.output.count < 64 << 20)
                s.output.removeAll()
                // Every complete request ran: a second run without new input does nothing.
                let (unparsed, commands) = (s.unparsed, s.commands)
                ProtocolHandler.run(s, ctx)
                #expect(s.closing || (s.unparsed == unparsed && s.commands == commands && s.output.isEmpty))
            }
        }
    }
}
