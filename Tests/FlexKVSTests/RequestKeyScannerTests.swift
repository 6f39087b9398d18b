@testable import FlexKVS
import Testing

/// The keys a TCP worker prefetches for: found in order, data blocks skipped, the scan
/// stopping where it cannot tell requests apart.
@Suite struct RequestKeyScannerTests {
    func scan(_ bytes: [UInt8], binary: Bool, maximum: Int = 64) -> [UInt32] {
        let hints = KeyHints()
        let n = bytes.withUnsafeBytes { RequestKeyScanner.scan($0, binary: binary, into: hints, maximum: maximum) }
        return Array(UnsafeBufferPointer(start: hints.hashes, count: n))
    }

    func hashes(_ keys: String...) -> [UInt32] { keys.map { Array($0.utf8).withUnsafeBytes { KVStore.hash($0) } } }

    @Test func textRequestsInOrder() {
        let input = "get a  b\r\ngets c\nset d 0 0 7\r\nget x\r\n\r\ndelete e\r\nincr f 1\r\nmg g v\r\nget h\r\n"
        #expect(scan(Array(input.utf8), binary: false) == hashes("a", "b", "c", "d", "e", "f"),
                "the set's data block (which looks like a get) is skipped; mg stops the scan")
        #expect(scan(Array(input.utf8), binary: false, maximum: 3) == hashes("a", "b", "c"))
        #expect(scan(Array("get a z\r\nget b".utf8), binary: false) == hashes("a", "z"), "a line not yet ended")
        #expect(scan(Array("get j\r\nset k 0 0 x\r\nget b\r\n".utf8), binary: false) == hashes("j", "k"),
                "a bad length stops the scan")
        #expect(scan(Array("replace r 0 0 1\r\nx\r\nprepend p 0 0 1\r\ny\r\ntouch t 0\r\ndecr d 1\r\ngets q\r\n".utf8),
                     binary: false) == hashes("r", "p", "t", "d", "q"))
    }

    /// One key has no misses to overlap with: nothing is returned (or hashed).
    @Test func aLoneKeyIsNotWorthAPrefetch() {
        #expect(scan(Array("get a\r\n".utf8), binary: false).isEmpty)
        #expect(scan(Array("get a\r\nmg b v\r\n".utf8), binary: false).isEmpty, "the scan stops at mg")
        #expect(scan(Array("get a b\r\n".utf8), binary: false) == hashes("a", "b"))
        #expect(scan([0x80, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1] + [UInt8](repeating: 0, count: 12) + [0x6B], binary: true).isEmpty)
    }

    @Test func binaryRequestsInOrder() {
        func request(_ opcode: UInt8, key: String, extras: Int = 0, value: Int = 0) -> [UInt8] {
            let body = extras + key.utf8.count + value
            return [0x80, opcode, 0, UInt8(key.utf8.count), UInt8(extras), 0, 0, 0,
                    0, 0, UInt8(body >> 8), UInt8(body & 255)] + [UInt8](repeating: 0, count: 12)
                + [UInt8](repeating: 0, count: extras) + Array(key.utf8) + [UInt8](repeating: 7, count: value)
        }
        let input = request(0x00, key: "one") + request(0x01, key: "two", extras: 8, value: 300) + request(0x0a, key: "")
            + request(0x0c, key: "three")
        #expect(scan(input, binary: true) == hashes("one", "two", "three"), "a keyless request (noop) is skipped")
        #expect(scan(Array(input.dropLast(2)), binary: true) == hashes("one", "two"), "a key not all there")
        #expect(scan([0x81] + input.dropFirst(), binary: true).isEmpty, "not a request")
    }
}
