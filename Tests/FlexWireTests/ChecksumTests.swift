import FlexWire
import Testing

@Suite struct ChecksumTests {
    @Test func rfc1071Example() {
        // RFC 1071 section 3: the words 0001 f203 f4f5 f6f7 sum to ddf2 (folded).
        let bytes: [UInt8] = [0x00, 0x01, 0xF2, 0x03, 0xF4, 0xF5, 0xF6, 0xF7]
        var sum = InternetChecksum()
        bytes.withUnsafeBytes { sum.add(bytes: $0.baseAddress!, count: $0.count) }
        #expect(sum.value == ~UInt16(0xDDF2))
    }

    @Test func oddLengthPadsWithZero() {
        let odd: [UInt8] = [0x12, 0x34, 0x56]
        let even: [UInt8] = [0x12, 0x34, 0x56, 0x00]
        var a = InternetChecksum(), b = InternetChecksum()
        odd.withUnsafeBytes { a.add(bytes: $0.baseAddress!, count: 3) }
        even.withUnsafeBytes { b.add(bytes: $0.baseAddress!, count: 4) }
        #expect(a.value == b.value)
    }

    @Test func wordAtATimeMatchesBytewise() {
        var rng = SystemRandomNumberGenerator()
        for length in 0..<200 {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            var fast = InternetChecksum()
            data.withUnsafeBytes { fast.add(bytes: $0.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!, count: length) }
            var slow: UInt32 = 0
            var i = 0
            while i < length {
                slow += UInt32(data[i]) << 8 | (i + 1 < length ? UInt32(data[i + 1]) : 0)
                i += 2
            }
            while slow >> 16 != 0 { slow = (slow & 0xFFFF) + (slow >> 16) }
            #expect(fast.value == ~UInt16(slow), "length \(length)")
        }
    }
}
