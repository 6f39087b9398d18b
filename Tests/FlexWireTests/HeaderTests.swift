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
