import FlexNIC
import FlexWire
import Glibc
import Testing

@Suite struct ToeplitzTests {
    /// Microsoft RSS verification suite, as in DPDK's app/test/test_thash.c:
    /// (destination, destination port, source, source port, IPv4 hash, IPv4+TCP hash).
    static let vectors: [(String, UInt16, String, UInt16, UInt32, UInt32)] = [
        ("161.142.100.80", 1766, "66.9.149.187", 2794, 0x323e_8fc2, 0x51cc_c178),
        ("65.69.140.83", 4739, "199.92.111.2", 14230, 0xd718_262a, 0xc626_b0ea),
        ("12.22.207.184", 38024, "24.19.198.95", 12898, 0xd2d0_a5de, 0x5c2b_394a),
        ("209.142.163.6", 2217, "38.27.205.30", 48228, 0x8298_9176, 0xafc7_327f),
        ("202.188.127.2", 1303, "153.39.163.191", 44251, 0x5d18_09c5, 0x10e8_28a2),
    ]

    @Test(arguments: 0..<5) func microsoftVectors(row: Int) {
        let (dst, dport, src, sport, l3, l4) = Self.vectors[row]
        let t = ToeplitzHash()
        let s = IPv4Address(src)!.value, d = IPv4Address(dst)!.value
        #expect(t.hash(source: s, destination: d) == l3)
        #expect(t.hash(source: s, destination: d, sourcePort: sport, destinationPort: dport) == l4)
        // The reference (bitwise) implementation agrees.
        var bytes: [UInt8] = []
        for w in [s, d] { bytes += [UInt8(w >> 24), UInt8(w >> 16 & 255), UInt8(w >> 8 & 255), UInt8(w & 255)] }
        #expect(t.referenceHash(bytes) == l3)
        bytes += [UInt8(sport >> 8), UInt8(sport & 255), UInt8(dport >> 8), UInt8(dport & 255)]
        #expect(t.referenceHash(bytes) == l4)
    }

    /// The suite's IPv6 rows (DPDK's `v6_tbl`): same layout as `vectors`.
    static let vectorsIPv6: [(String, UInt16, String, UInt16, UInt32, UInt32)] = [
        ("3ffe:2501:200:3::1", 1766, "3ffe:2501:200:1fff::7", 2794, 0x2cc1_8cd5, 0x4020_7d3d),
        ("ff02::1", 4739, "3ffe:501:8::260:97ff:fe40:efab", 14230, 0x0f0c_461c, 0xdde5_1bbf),
        ("fe80::200:f8ff:fe21:67cf", 38024, "3ffe:1900:4545:3:200:f8ff:fe21:67cf", 44251, 0x4b61_e985, 0x02d1_feef),
    ]

    static func ipv6(_ text: String) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: 16)
        precondition(inet_pton(AF_INET6, text, &bytes) == 1, text)
        return bytes
    }

    @Test(arguments: 0..<3) func microsoftIPv6Vectors(row: Int) {
        let (dst, dport, src, sport, l3, l4) = Self.vectorsIPv6[row]
        let t = ToeplitzHash()
        let addresses = Self.ipv6(src) + Self.ipv6(dst)
        addresses.withUnsafeBytes { a in
            #expect(t.hashIPv6(addresses: a.baseAddress!, sourcePort: nil, destinationPort: nil) == l3)
            #expect(t.hashIPv6(addresses: a.baseAddress!, sourcePort: sport, destinationPort: dport) == l4)
        }
        #expect(t.referenceHash(addresses) == l3)
        #expect(t.referenceHash(addresses + [UInt8(sport >> 8), UInt8(sport & 255), UInt8(dport >> 8), UInt8(dport & 255)]) == l4)
    }

    @Test func symmetricIPv6HashMeetsBothDirections() {
        let t = ToeplitzHash()
        var rng = SplitMix64(seed: 9)
        for _ in 0..<500 {
            let a = (0..<16).map { _ in UInt8(rng.next(below: 256)) }, b = (0..<16).map { _ in UInt8(rng.next(below: 256)) }
            let p = UInt16(rng.next(below: 65536)), q = UInt16(rng.next(below: 65536))
            let forward = (a + b).withUnsafeBytes { t.symmetricHashIPv6(addresses: $0.baseAddress!, sourcePort: p, destinationPort: q) }
            let backward = (b + a).withUnsafeBytes { t.symmetricHashIPv6(addresses: $0.baseAddress!, sourcePort: q, destinationPort: p) }
            #expect(forward == backward)
            let ordered = a.lexicographicallyPrecedes(b) ? a + b : b + a
            let plain = ordered.withUnsafeBytes { t.hashIPv6(addresses: $0.baseAddress!, sourcePort: min(p, q), destinationPort: max(p, q)) }
            #expect(forward == plain, "documented ordering: addresses sorted, ports sorted")
        }
    }

    @Test func tableMatchesReferenceOnRandomInput() {
        var rng = SystemRandomNumberGenerator()
        let key = (0..<40).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let t = ToeplitzHash(key: key)
        for length in 0...t.maximumInputLength {
            let input = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let fast = input.withUnsafeBytes { t.hash($0.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, count: length) }
            #expect(fast == t.referenceHash(input), "length \(length)")
        }
    }

    @Test func symmetricHashMeetsBothDirections() {
        let t = ToeplitzHash()
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<1000 {
            let a = UInt32.random(in: 0...UInt32.max, using: &rng), b = UInt32.random(in: 0...UInt32.max, using: &rng)
            let p = UInt16.random(in: 0...UInt16.max, using: &rng), q = UInt16.random(in: 0...UInt16.max, using: &rng)
            let forward = t.symmetricHash(source: a, destination: b, sourcePort: p, destinationPort: q)
            #expect(forward == t.symmetricHash(source: b, destination: a, sourcePort: q, destinationPort: p))
            // Documented ordering: addresses sorted, ports sorted, independently.
            #expect(forward == t.hash(source: min(a, b), destination: max(a, b), sourcePort: min(p, q), destinationPort: max(p, q)))
        }
    }

    @Test func keyHashMatchesMurmur3Vectors() {
        #expect(KeyHash.hash([UInt8]()) == 0)
        #expect(KeyHash.hash([UInt8](), seed: 1) == 0x514E_28B7)
        #expect(KeyHash.hash(Array("The quick brown fox jumps over the lazy dog".utf8)) == 0x2E4F_F723)
        #expect(KeyHash.hash(Array("hello".utf8)) == 0x248B_FA47)
    }

    @Test func redirectionTableSpreadsAndReprograms() {
        let table = RedirectionTable(entries: 128, queues: 3)
        #expect(table.snapshot.prefix(6) == [0, 1, 2, 0, 1, 2])
        #expect(table.queue(for: 0x1234_5605) == 5 % 3)  // entry 5 (hash & 127)
        table.update(Array(repeating: 2, count: 128))
        #expect(table.queue(for: 77) == 2)
    }
}
