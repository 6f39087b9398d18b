@testable import FlexIDS
import FlexTestSupport
import FlexWire
import Testing

/// The decoders behind `base64_decode`, `asn1`, `ftpbounce`, `byte_math`, `ipopts` and
/// `stream_size`, on the edges the corpus
/// (`Cases/`) does not reach. Expectations follow Snort 2.9's decoders as their
/// documentation and the manual describe them.
@Suite struct DecodingOptionTests {
    /// What `Base64Decoding.decode` makes of `text` (nil: an error).
    func base64(_ text: String, limit: Int? = nil) -> String? {
        let input = Array(text.utf8)
        let output = UnsafeMutableRawBufferPointer.allocate(byteCount: max(input.count, 1), alignment: 1)
        defer { output.deallocate() }
        let n = input.withUnsafeBytes { Base64Decoding.decode($0, limit: limit, into: output) }
        return n.map { String(decoding: output[0..<$0], as: UTF8.self) }
    }

    @Test func base64IsUnfoldedCutAndDecoded() {
        #expect(base64("Zm9vIGJhcg==") == "foo bar")
        #expect(base64("Zm9v YmFy") == "foobar", "bytes outside the alphabet are skipped")
        #expect(base64("Zm9v\r\n YmFy") == "foobar", "a folded line goes on")
        #expect(base64("Zm9v\n\tYmFy") == "foobar")
        #expect(base64("Zm9v\r\nYmFy") == "foo", "a line end without a blank after it ends the header")
        #expect(base64("Zm9v\r\rYmFy") == "foo")
        #expect(base64("Zm9vYmFy", limit: 4) == "foo", "bytes limits the encoded bytes decoded")
        #expect(base64("Zm9vYm") == "foo", "an incomplete last group is ignored")
        #expect(base64("Zm8=YmFy") == "fo", "= in a group's third or fourth place ends the data")
        #expect(base64("Zg==") == "f")
        #expect(base64("=m9v") == nil, "= in a group's first two places is an error")
        #expect(base64("Z=9v") == nil)
        #expect(base64("!!!!") == "", "nothing to decode is not an error")
    }

    /// Whether `check` holds over `bytes` from `start`.
    func asn1(_ check: ASN1Check, _ bytes: [UInt8], from start: Int = 0) -> Bool {
        bytes.withUnsafeBytes { check.holds(in: $0, from: start) }
    }

    @Test func asn1ChecksFollowSnortsDecoder() {
        let bitstring = ASN1Check(bitstringOverflow: true)
        #expect(asn1(bitstring, [0x03, 0x02, 0x09, 0xFF]), "9 unused bits of 8")
        #expect(!asn1(bitstring, [0x03, 0x02, 0x08, 0xFF]), "8 unused bits of 8 is still an encoding")
        #expect(asn1(bitstring, [0x23, 0x04, 0x03, 0x02, 0x20, 0xFF]), "inside a constructed BIT STRING")
        #expect(asn1(bitstring, [0x02, 0x01, 0x00, 0x03, 0x02, 0x20, 0xFF]), "a later element at the top level")
        #expect(asn1(bitstring, [0x30, 0x80, 0x30, 0x80, 0x03, 0x02, 0x20, 0xFF, 0x00, 0x00, 0x00, 0x00]), "nested indefinite lengths")
        #expect(asn1(bitstring, [0x30, 0x80, 0x00, 0x00, 0x03, 0x02, 0x20, 0xFF]), "after an end-of-contents")
        #expect(!asn1(bitstring, [0x04, 0x80, 0x03, 0x02, 0x20, 0xFF]), "a primitive of indefinite length stops the walk")
        #expect(!asn1(bitstring, [0x04, 0x09, 0x03, 0x02, 0x20, 0xFF]), "a primitive cut short stops the walk")
        #expect(asn1(bitstring, [0x30, 0x09, 0x03, 0x02, 0x20, 0xFF]), "a constructed element cut short is walked")
        #expect(asn1(bitstring, [0x00, 0x03, 0x02, 0x20, 0xFF], from: 1))
        #expect(!asn1(bitstring, [0x03, 0x02, 0x20, 0xFF], from: 4), "no data at the offset")
        #expect(!asn1(bitstring, [0x03, 0x02, 0x20, 0xFF], from: -1))
        // 128 nested constructed elements are walked into; a 129th stops the walk. More
        // elements than the decoder's nodes stop it too.
        let nested = { (levels: Int) -> [UInt8] in Array([[UInt8]](repeating: [0x30, 0x80], count: levels).joined()) + [0x03, 0x02, 0x20, 0xFF] }
        #expect(asn1(bitstring, nested(128)))
        #expect(!asn1(bitstring, nested(129)))
        let many = Array([[UInt8]](repeating: [0x05, 0x00], count: 300).joined()) + [0x03, 0x02, 0x20, 0xFF]
        #expect(!asn1(bitstring, many))
        #expect(asn1(bitstring, Array([[UInt8]](repeating: [0x05, 0x00], count: 200).joined()) + [0x03, 0x02, 0x20, 0xFF]))

        let double = ASN1Check(doubleOverflow: true)
        let real = { (first: UInt8, length: Int) -> [UInt8] in
            [0x09, 0x82, UInt8(length >> 8), UInt8(length & 0xFF), first] + [UInt8](repeating: 0x31, count: length - 1)
        }
        #expect(asn1(double, real(0x03, 257)))
        #expect(!asn1(double, real(0x03, 256)), "longer than 256")
        #expect(!asn1(double, real(0x80, 300)), "binary form")
        #expect(!asn1(double, real(0x40, 300)), "special value form")

        let oversize = ASN1Check(oversizeLength: 100)
        #expect(asn1(oversize, [0x04, 0x64] + [UInt8](repeating: 0, count: 100)), "a length of 100 is not below 100")
        #expect(!asn1(oversize, [0x04, 0x63] + [UInt8](repeating: 0, count: 99)))
        #expect(asn1(oversize, [0x04, 0x82, 0x10, 0x00, 0x00]), "the declared length, however much was sent")
        #expect(asn1(oversize, [0x04, 0x7F]), "a header at the payload's end still has its length")
        #expect(asn1(ASN1Check(oversizeLength: 0), [0x04, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00]), "a length past 32 bits is oversize")
        #expect(!asn1(ASN1Check(oversizeLength: 0), [0x04, 0x82, 0x10, 0x00, 0x00]), "oversize_length 0 matches only those")
        #expect(!asn1(bitstring, [0x04, 0x85, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03, 0x02, 0x20, 0xFF]), "it stops the walk")
        #expect(asn1(ASN1Check(print: true), [0xFF]), "print alone holds")
        let indefinite: [UInt8] = [0x30, 0x80, 0x04, 0x08] + [UInt8](repeating: 0x41, count: 8) + [0x04, 0x08]
            + [UInt8](repeating: 0x41, count: 8) + [0x00, 0x00]
        #expect(asn1(ASN1Check(oversizeLength: 20), indefinite), "closed by end-of-contents: the length of what it held")
        #expect(!asn1(ASN1Check(oversizeLength: 21), indefinite))
    }

    @Test func byteJumpOfNoBytesMovesByItsOffset() throws {
        let engine = try Make.engine(#"alert tcp any any -> any any (content:"AB"; byte_jump:0,2,relative; content:"CD"; within:2; sid:1;)"#)
        #expect(Make.sids(engine, [Make.tcp("AB..CD"), Make.tcp("ABCD..")]) == [1])
    }

    @Test func byteMathFailsWhereSnortsDoes() {
        func math(_ op: ByteMath.Operator) -> ByteMath { ByteMath(read: ByteRead(count: 1, offset: 0), op: op, rvalue: 0, slot: 0) }
        #expect(math(.add).apply(UInt32.max - 1, 1) == UInt32.max)
        #expect(math(.add).apply(UInt32.max, 1) == nil, "overflow")
        #expect(math(.subtract).apply(1, 2) == nil, "below 0")
        #expect(math(.multiply).apply(1 << 16, 1 << 16) == nil)
        #expect(math(.multiply).apply(0, UInt32.max) == 0)
        #expect(math(.divide).apply(7, 0) == nil)
        #expect(math(.divide).apply(7, 2) == 3)
        #expect(math(.shiftLeft).apply(1, 31) == 1 << 31)
        #expect(math(.shiftLeft).apply(5, 32) == 5, "shift counts mod 32, as x86's")
        #expect(math(.shiftRight).apply(0x80, 33) == 0x40)
    }

    @Test func ipOptionsAreReadAsSnortsDecoderReadsThem() {
        func holds(_ t: IPOptionTest, _ options: [UInt8]) -> Bool { options.withUnsafeBytes { t.matches($0) } }
        #expect(holds(.code(0x07), [0x01, 0x07, 0x07, 0x04, 0, 0, 0, 0]))
        #expect(!holds(.code(0x07), [0x01, 0x07, 0x07, 0x04, 0, 0, 0]), "an option cut by the header's end: none counts")
        #expect(!holds(.any, [0x83, 0x01, 0x00, 0x00]), "a length below 2: none counts")
        #expect(!holds(.code(0x00), [0x01, 0x00, 0x00, 0x00]), "EOL itself is never counted")
        #expect(!holds(.code(0x44), [0x00, 0x44, 0x04, 0x00]), "nor what follows it")
        #expect(!holds(.any, [0x00, 0x00, 0x00, 0x00]))
        #expect(holds(.any, [0x01, 0x00, 0x00, 0x00]))
        #expect(!holds(.any, []))
    }

    @Test func streamSizeFollowsEachSidesSequenceNumbers() {
        var s = FlowTable.Sequence()
        s.advance(1000, to: 1001)  // SYN
        s.advance(1001, to: 1006)
        #expect(s.bytes == 6)
        s.advance(1001, to: 1003)  // a retransmission moves nothing back
        #expect(s.bytes == 6)
        s.advance(1000 + 1 << 30, to: 1000 + 1 << 30 + 10)  // far out of the window: not believed
        #expect(s.bytes == 6)
        var wrapped = FlowTable.Sequence()
        wrapped.advance(UInt32.max - 1, to: UInt32.max)
        wrapped.advance(UInt32.max, to: 4)
        #expect(wrapped.bytes == UInt32.max - 5, "stream5 subtracts a wrapped pair the other way round")
    }

    @Test func streamSizeStartsOverWithANewSessionAndIgnoresOtherRules() throws {
        let rule = #"alert tcp any any -> any any (stream_size:client,>,100; content:"x"; sid:1;)"#
        func segment(_ payload: String, _ flags: TCPHeader.Flags, seq: UInt32) -> [UInt8] {
            try! Frames.build { try FrameBuilder.tcp(into: $0, endpoints: Make.client, payload: Array(payload.utf8), flags: flags, sequence: seq) }
        }
        let big = String(repeating: "x", count: 200)
        let frames = [segment("", [.syn], seq: 1000), segment(big, [.ack, .psh], seq: 1001),  // 201 bytes: alert
                      segment("", [.rst], seq: 1201), segment("", [.syn], seq: 90_000),      // a new session
                      segment("x", [.ack, .psh], seq: 90_001)]                               // 2 bytes: none
        #expect(Make.sids(try Make.engine(rule), frames) == [1])
        #expect(Inspector(engine: try Make.engine(#"alert tcp any any -> any any (content:"x"; sid:1;)"#)).flows.sequences == nil)
    }

    @Test func portCommandAddressIsReadAsSnortReadsIt() {
        func address(_ text: String) -> UInt32? {
            Array(text.utf8).withUnsafeBytes { PacketContext.portCommandAddress($0, from: 4) }
        }
        #expect(address("PORT 10,0,0,1,4,1\r\n") == IPv4Address(10, 0, 0, 1).value)
        #expect(address("PORT   192,168,1,5") == IPv4Address(192, 168, 1, 5).value, "blanks before, no port after")
        #expect(address("PORT 192,168,1\r\n") == nil, "three numbers")
        #expect(address("PORT 192,168,1 5,0,21") == nil, "a blank inside")
        #expect(address("PORT 256,1,1,1,0,21") == nil, "above 255")
        #expect(address("PORT 1,a,1,1,0,21") == nil)
        #expect(address("PORT") == nil)
    }
}
