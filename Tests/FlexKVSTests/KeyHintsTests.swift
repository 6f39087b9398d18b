@testable import FlexKVS
import FlexWire
import Testing

/// The scan's hashes reused by the protocol: taken only for the very bytes they were
/// computed from, and forgotten when the input changes.
@Suite struct KeyHintsTests {
    /// A hint matches a key at the same address with the same length; hints of keys the
    /// protocol passes over are skipped; the same bytes elsewhere, or a prefix, are not
    /// matched.
    @Test func aHintMatchesOnlyTheBytesItWasFoundIn() {
        let input = Array("get aa bb\r\nget cc\r\n".utf8)
        let copy = input.map { $0 }  // equal bytes in another buffer
        let hints = KeyHints()
        input.withUnsafeBytes { b in
            #expect(RequestKeyScanner.scan(b, binary: false, into: hints) == 3)
            let key = { (o: Int, n: Int) in UnsafeRawBufferPointer(rebasing: b[o..<(o + n)]) }
            #expect(hints.take(key(4, 1)) == nil, "a prefix of the key")
            #expect(hints.take(key(7, 2)) == KVStore.hash(key(7, 2)), "bb, aa passed over")
            #expect(hints.take(key(4, 2)) == nil, "aa was passed over: hints go forward only")
            #expect(hints.take(key(15, 2)) == KVStore.hash(key(15, 2)))
            #expect(hints.take(key(15, 2)) == nil, "each is taken once")
            #expect(RequestKeyScanner.scan(b, binary: false, into: hints) == 3)
            copy.withUnsafeBytes { other in
                #expect(hints.take(UnsafeRawBufferPointer(rebasing: other[4..<6])) == nil, "equal bytes elsewhere")
            }
        }
    }

    /// The protocol looks keys up by the hints' hashes (wrong ones here: the stored
    /// items are not found, so they were used), and a session forgets its hints when
    /// its input changes, so later lookups hash the bytes themselves.
    @Test func theProtocolTakesHintsUntilTheInputChanges() {
        let ctx = KVSContext(store: KVStore(KVStore.Configuration()), threads: 1)
        let s = Session()
        Array("set a 0 0 1\r\nx\r\nset b 0 0 1\r\ny\r\n".utf8).withUnsafeBytes { s.receive($0) }
        ProtocolHandler.run(s, ctx)
        s.output.removeAll()

        let request = Array("get a\r\nget b\r\n".utf8)
        request.withUnsafeBytes { s.receive($0) }
        let hints = KeyHints()
        s.input.withUnsafeBytes { b in
            #expect(RequestKeyScanner.scan(UnsafeRawBufferPointer(rebasing: b[s.consumed...]), binary: false, into: hints) == 2)
        }
        for i in 0..<hints.count { hints.hashes[i] &+= 1 }  // wrong on purpose
        s.keyHints = Unmanaged.passUnretained(hints)
        ProtocolHandler.run(s, ctx)
        #expect(s.output.text == "END\r\nEND\r\n", "looked up by the hints' (wrong) hashes")
        #expect(s.keyHints == nil, "forgotten once the input was compacted")

        s.output.removeAll()
        s.keyHints = Unmanaged.passUnretained(hints)
        request.withUnsafeBytes { s.receive($0) }
        #expect(s.keyHints == nil, "forgotten when bytes arrive")
        ProtocolHandler.run(s, ctx)
        #expect(s.output.text == "VALUE a 0 1\r\nx\r\nEND\r\nVALUE b 0 1\r\ny\r\nEND\r\n")
    }

    /// Seeded pipelined streams over a few keys (every keyed text command, multi-key
    /// gets, keys the scan finds but the protocol never looks up, hostile requests), fed in random pieces to two stores: one
    /// session hashes every key itself, the other takes the scan's hashes as a TCP
    /// worker does. Their replies must be the same bytes. A request that ends the
    /// session ends both; the stream goes on in new ones.
    @Test(arguments: [UInt64(1), 2, 3])
    func hintsChangeNoReply(seed: UInt64) {
        let plain = KVSContext(store: KVStore(KVStore.Configuration()), threads: 1)
        let hinted = KVSContext(store: KVStore(KVStore.Configuration()), threads: 1)
        var rng = SplitMix64(seed: seed)
        let keys = ["a", "bb", "key:1", "key:2", String(repeating: "k", count: 250)]
        func key() -> String { keys[Int(rng.next() % UInt64(keys.count))] }
        var stream: [UInt8] = []
        for _ in 0..<3_000 {
            switch rng.next() % 11 {
            case 0: stream += Array("get \(key()) \(key()) \(key())\r\n".utf8)
            case 1: stream += Array("gets \(key())\r\n".utf8)
            case 2: stream += Array("set \(key()) 5 0 3\r\nabc\r\n".utf8)
            case 3: stream += Array("delete \(key())\r\n".utf8)
            case 4: stream += Array("incr \(key()) 2\r\n".utf8)
            case 5: stream += Array("set \(key()) 0 0 1\r\n7\r\n".utf8)
            case 6: stream += Array("touch \(key()) 100\r\n".utf8)
            case 7: stream += Array("get \(key())\r\n".utf8)
            // Keys the scan finds and the protocol does not look up: a data block longer
            // than it said, a get with a key over 250 bytes first.
            case 8: stream += Array("set \(key()) 0 0 2\r\nabc\r\n".utf8)
            case 9: stream += Array("get \(String(repeating: "x", count: 251)) \(key())\r\n".utf8)
            default:
                // Not reports of the process or the clock (stats, metadump): they differ.
                var r = HostileInputIntegrationTests.textRequest(&rng)
                while r.starts(with: "stats".utf8) || r.starts(with: "lru_crawler".utf8) { r = HostileInputIntegrationTests.textRequest(&rng) }
                stream += r
            }
        }
        var a = Session(), b = Session()
        let hints = KeyHints()
        var offset = 0, sessions = 1
        while offset < stream.count {
            let n = min(stream.count - offset, Int(1 + rng.next() % 300))
            stream[offset..<(offset + n)].withUnsafeBytes { a.receive($0); b.receive($0) }
            offset += n
            ProtocolHandler.run(a, plain)
            b.input.withUnsafeBytes { input in
                _ = RequestKeyScanner.scan(UnsafeRawBufferPointer(rebasing: input[b.consumed...]), binary: false, into: hints)
            }
            b.keyHints = Unmanaged.passUnretained(hints)
            ProtocolHandler.run(b, hinted)
            #expect(a.output.text == b.output.text, "offset \(offset)")
            if a.output.text != b.output.text { return }
            a.output.removeAll()
            b.output.removeAll()
            #expect(a.closing == b.closing)
            if a.closing {  // a hostile request ended it: go on in a new connection
                a = Session()
                b = Session()
                sessions += 1
            }
        }
        #expect(sessions < 200, "most of the stream ran in long sessions")
    }
}
