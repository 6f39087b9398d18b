import FlexTestSupport
import FlexWire
import Testing

@Suite struct HeaderTests {
    @Test func udpFrameParses() throws {
        let f = try Frames.parse(Frames.udp(Array("get k\r\n".utf8)))
        #expect(f.layers == [.ipv4, .udp])
        #expect(f.etherType == 0x0800)
        #expect(f.sourceAddress == IPv4Address(10, 0, 0, 1).value)
        #expect(f.destinationAddress == IPv4Address(10, 0, 0, 2).value)
        #expect(f.sourcePort == 40000 && f.destinationPort == 11211)
        #expect(f.l3Offset == 14 && f.l4Offset == 34 && f.payloadOffset == 42)
        #expect(f.payloadLength == 7)
    }

    /// The header checksum against a worked example (RFC 1071's arithmetic, the
    /// well-known 192.168.0.1 -> 192.168.0.199 UDP header: 0xB861), with and without
    /// options (which take the general sum, not the 20-byte one).
    @Test func ipv4HeaderChecksumMatchesAWorkedExample() throws {
        var header: [UInt8] = [0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0xAA, 0xAA,
                               0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0xC7]
        header.withUnsafeMutableBytes { IPv4Header(unchecked: $0.baseAddress!, headerLength: 20).updateChecksum() }
        #expect(header[10] == 0xB8 && header[11] == 0x61)
        var datagram = header + [UInt8](repeating: 0, count: 0x73 - 20)  // as long as its total length says
        #expect(throws: Never.self) { try datagram.withUnsafeMutableBytes { _ = try IPv4Header($0, verifyChecksum: true) } }
        datagram[13] ^= 0x01
        #expect(throws: WireError.badChecksum(.ipv4)) { try datagram.withUnsafeMutableBytes { _ = try IPv4Header($0, verifyChecksum: true) } }
        // With a 4-byte option (NOP NOP NOP EOL): the option words join the sum.
        var withOptions: [UInt8] = [0x46, 0x00, 0x00, 0x77, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
                                    0xC0, 0xA8, 0x00, 0x01, 0xC0, 0xA8, 0x00, 0xC7, 0x01, 0x01, 0x01, 0x00]
        withOptions.withUnsafeMutableBytes { IPv4Header(unchecked: $0.baseAddress!, headerLength: 24).updateChecksum() }
        // Against the sum written out here, word by word.
        var sum: UInt32 = 0
        for i in stride(from: 0, to: 24, by: 2) where i != 10 { sum += UInt32(withOptions[i]) << 8 | UInt32(withOptions[i + 1]) }
        while sum > 0xFFFF { sum = (sum & 0xFFFF) + (sum >> 16) }
        #expect(UInt16(withOptions[10]) << 8 | UInt16(withOptions[11]) == ~UInt16(sum))
    }

    @Test func udpChecksumVerifiesAndDetectsCorruption() throws {
        var frame = Frames.udp(Array("payload".utf8))
        try frame.withUnsafeMutableBytes { b in
            let ip = try IPv4Header(UnsafeMutableRawBufferPointer(rebasing: b[14...]), verifyChecksum: true)
            let udp = try UDPHeader(UnsafeMutableRawBufferPointer(rebasing: b[34...]))
            #expect(udp.verifyChecksum(ip: ip))
            b[45] ^= 0x40
            #expect(!udp.verifyChecksum(ip: ip))
        }
    }

    @Test func tcpParsesWithFlagsAndChecksum() throws {
        var frame = Frames.tcp(Array("stats\r\n".utf8))
        let f = try Frames.parse(frame)
        #expect(f.layers == [.ipv4, .tcp])
        #expect(f.tcpFlags == TCPHeader.Flags([.ack, .psh]).rawValue)
        #expect(f.payloadOffset == 54 && f.payloadLength == 7)
        try frame.withUnsafeMutableBytes { b in
            let ip = try IPv4Header(UnsafeMutableRawBufferPointer(rebasing: b[14...]))
            let tcp = try TCPHeader(UnsafeMutableRawBufferPointer(rebasing: b[34...]))
            #expect(tcp.verifyChecksum(ip: ip, segmentLength: 27))
        }
    }

    @Test func ipv4OptionsAreSkipped() throws {
        // Rebuild a UDP frame with a 4-byte option (NOP NOP NOP EOL): IHL 6.
        let plain = Frames.udp(Array("x".utf8))
        var frame = Array(plain[..<34]) + [1, 1, 1, 0] + Array(plain[34...])
        let ipLength = UInt16(frame.count - 14)
        frame.withUnsafeMutableBytes { b in
            let base = b.baseAddress!
            base.storeBytes(of: UInt8(0x46), toByteOffset: 14, as: UInt8.self)
            base.storeBE16(ipLength, at: 16)
            IPv4Header(unchecked: base + 14, headerLength: 24).updateChecksum()
        }
        let f = try Frames.parse(frame)
        #expect(f.l4Offset == 38 && f.payloadOffset == 46 && f.payloadLength == 1)
        var copy = frame
        try copy.withUnsafeMutableBytes { b in
            let ip = try IPv4Header(UnsafeMutableRawBufferPointer(rebasing: b[14...]), verifyChecksum: true)
            #expect(ip.options.count == 4)
        }
    }

    @Test func vlanTagIsRead() throws {
        let plain = Frames.udp()
        let frame = Array(plain[..<12]) + [0x81, 0x00, 0x20, 0x2A] + Array(plain[12...])
        let f = try Frames.parse(frame)
        #expect(f.layers.contains(.vlan) && f.vlanID == 42 && f.l3Offset == 18 && f.destinationPort == 11211)
    }

    @Test func everyTruncationIsReportedNotTrapped() {
        for frame in [Frames.udp(), Frames.tcp(), Frames.dccp(.data), Frames.dccp(.ack, acknowledgement: 9)] {
            #expect(throws: Never.self) { try Frames.parse(frame) }
            for cut in 0..<frame.count {
                #expect(throws: WireError.self, "cut at \(cut) of \(frame.count)") { try Frames.parse(Array(frame[..<cut])) }
            }
        }
    }

    @Test func inconsistentHeadersAreReported() {
        func mutated(_ frame: [UInt8], _ edit: (inout [UInt8]) -> Void, fixIP: Bool = true) -> [UInt8] {
            var f = frame
            edit(&f)
            if fixIP { f.withUnsafeMutableBytes { IPv4Header(unchecked: $0.baseAddress! + 14, headerLength: 20).updateChecksum() } }
            return f
        }
        let udp = Frames.udp()
        #expect(throws: WireError.inconsistent(.ipv4, "version 6")) { try Frames.parse(mutated(udp) { $0[14] = 0x65 }) }
        #expect(throws: WireError.inconsistent(.ipv4, "header length 16")) { try Frames.parse(mutated(udp) { $0[14] = 0x44 }) }
        #expect(throws: WireError.badChecksum(.ipv4)) { try Frames.parse(mutated(udp, { $0[22] = 1 }, fixIP: false)) }
        #expect(throws: WireError.inconsistent(.udp, "length 4 below 8")) { try Frames.parse(mutated(udp) { $0[38] = 0; $0[39] = 4 }) }
        #expect(throws: WireError.self) { try Frames.parse(mutated(udp) { $0[16] = 0; $0[17] = 10 }) }  // total < IHL
        let tcp = Frames.tcp()
        #expect(throws: WireError.inconsistent(.tcp, "data offset 16")) { try Frames.parse(mutated(tcp) { $0[46] = 0x40 }) }
    }

    @Test func frameBuilderRejectsSmallBuffers() {
        var small = [UInt8](repeating: 0, count: 30)
        #expect(throws: WireError.self) {
            try small.withUnsafeMutableBytes { try FrameBuilder.udp(into: $0, endpoints: Frames.endpoints, payload: [1, 2]) }
        }
    }

    @Test func addressText() {
        #expect(IPv4Address("192.168.1.20")?.value == 0xC0A8_0114)
        #expect(IPv4Address("256.1.1.1") == nil)
        #expect(IPv4Address("1.2.3") == nil)
        #expect(IPv4Address(10, 1, 2, 3).description == "10.1.2.3")
        #expect(MACAddress(0xAA, 0xBB, 0xCC, 0, 1, 2).description == "aa:bb:cc:00:01:02")
    }
}
