import FlexTestSupport
import FlexWire
import Testing

@Suite struct DCCPTests {
    func view(_ frame: inout [UInt8], _ body: (IPv4Header, DCCPHeader, Int) throws -> Void) throws {
        try frame.withUnsafeMutableBytes { b in
            let ip = try IPv4Header(UnsafeMutableRawBufferPointer(rebasing: b[14...]))
            let l4 = UnsafeMutableRawBufferPointer(rebasing: b[34..<(14 + ip.totalLength)])
            try body(ip, try DCCPHeader(l4), l4.count)
        }
    }

    @Test func longSequenceDataPacket() throws {
        var frame = Frames.dccp(.data, sequence: 0xABCD_EF01_2345)
        let f = try Frames.parse(frame)
        #expect(f.layers == [.ipv4, .dccp] && f.dccpType == 2 && f.payloadOffset == 34 + 16 && f.payloadLength == 5)
        try view(&frame) { ip, d, n in
            #expect(d.extendedSequence && d.headerLength == 16 && d.type == .data)
            #expect(d.sequenceNumber == 0xABCD_EF01_2345)
            #expect(d.acknowledgementNumber == nil)
            #expect(throws: Never.self) { try d.verifyChecksum(ip: ip, packetLength: n) }
        }
    }

    @Test func shortSequenceAckCarriesAckSubheader() throws {
        var frame = Frames.dccp(.ack, extended: false, sequence: 0x12_3456, acknowledgement: 0xAB_CDEF, payload: [])
        try view(&frame) { ip, d, n in
            #expect(!d.extendedSequence && d.headerLength == 16 && d.type == .ack)
            #expect(d.sequenceNumber == 0x12_3456)
            #expect(d.acknowledgementNumber == 0xAB_CDEF)
            #expect(throws: Never.self) { try d.verifyChecksum(ip: ip, packetLength: n) }
        }
    }

    @Test func longAckSubheaderIsEightBytes() throws {
        var frame = Frames.dccp(.dataAck, sequence: 7, acknowledgement: 0xFFFF_FFFF_FFFF, payload: [1, 2, 3])
        try view(&frame) { _, d, _ in
            #expect(d.headerLength == 24 && d.acknowledgementNumber == 0xFFFF_FFFF_FFFF)
        }
    }

    @Test func shortSequenceOnRequestIsRejected() {
        var frame = Frames.dccp(.ack, extended: false, payload: [])
        frame[34 + 8] = DCCPHeader.PacketType.request.rawValue << 1  // X=0 Request
        #expect(throws: WireError.self) { try Frames.parse(frame) }
    }

    @Test func unknownTypeAndShortOffsetAreRejected() {
        var bad = Frames.dccp(.data)
        bad[34 + 8] = 12 << 1 | 1
        #expect(throws: WireError.unsupported(.dccp, "packet type 12")) { try Frames.parse(bad) }
        var short = Frames.dccp(.ack, payload: [])
        short[34 + 4] = 4  // 16 bytes: no room for the ack subheader
        #expect(throws: WireError.inconsistent(.dccp, "data offset 16 below 24")) { try Frames.parse(short) }
    }

    @Test func partialCoverageIgnoresUncoveredPayload() throws {
        // CsCov = 1: header only. Corrupting the payload keeps the checksum valid.
        var frame = Frames.dccp(.data, coverage: 1, payload: Array("0123456789".utf8))
        frame[frame.count - 1] ^= 0xFF
        try view(&frame) { ip, d, n in
            #expect(d.coveredLength(packetLength: n) == 16)
            #expect(throws: Never.self) { try d.verifyChecksum(ip: ip, packetLength: n) }
        }
        // Full coverage catches the same corruption.
        var full = Frames.dccp(.data, coverage: 0, payload: Array("0123456789".utf8))
        full[full.count - 1] ^= 0xFF
        try view(&full) { ip, d, n in
            #expect(throws: WireError.badChecksum(.dccp)) { try d.verifyChecksum(ip: ip, packetLength: n) }
        }
    }

    @Test func coverageBeyondThePacketIsInvalid() throws {
        var frame = Frames.dccp(.data, coverage: 0, payload: [1, 2, 3, 4])
        try view(&frame) { ip, d, n in
            d.checksumCoverage = 3  // (3-1)*4 = 8 payload bytes, only 4 present
            #expect(d.coveredLength(packetLength: n) == nil)
            #expect(throws: WireError.self) { try d.verifyChecksum(ip: ip, packetLength: n) }
        }
    }
}
