import FlexNIC
import FlexWire
import Testing

/// The 8-bytes-a-step key end agrees with a byte-by-byte search, wherever the space,
/// CR or LF lies (or none does), and reads nothing past its limit (each buffer is
/// exactly `limit` bytes long: the sanitizer run would catch an overread).
@Suite struct TextTokenTests {
    @Test func findsTheFirstSpaceCROrLFAsAByteSearchDoes() {
        var rng = SplitMix64(seed: 29)
        let alphabet: [UInt8] = [0x20, 0x0D, 0x0A, 0x00, 0x21, 0x2C, 0x8D, 0x8A, 0xA0, 0x0B, 0x6B, 0xFF, 0x1F, 0x09]
        var lengths: Set<Int> = []
        for trial in 0..<50_000 {
            let limit = rng.next(below: 80)
            let buffer = UnsafeMutableRawPointer.allocate(byteCount: max(limit, 1), alignment: 1)
            defer { buffer.deallocate() }
            // Mostly key bytes; now and then a delimiter or a byte one bit away from one.
            let rate = rng.next(below: 40) + 1
            for i in 0..<limit {
                let byte = rng.next(below: rate) == 0 ? alphabet[rng.next(below: alphabet.count)]
                    : UInt8(0x21 + rng.next(below: 0x5E))
                buffer.storeBytes(of: byte, toByteOffset: i, as: UInt8.self)
            }
            var expected = 0
            while expected < limit {
                let c = buffer.load(fromByteOffset: expected, as: UInt8.self)
                if c == 0x20 || c == 0x0D || c == 0x0A { break }
                expected += 1
            }
            let found = TextToken.length(buffer, limit: limit)
            #expect(found == expected, "trial \(trial), limit \(limit)")
            if found != expected { return }
            lengths.insert(found)
        }
        #expect(lengths.count > 60, "delimiters at most positions, and none at all")
    }
}
