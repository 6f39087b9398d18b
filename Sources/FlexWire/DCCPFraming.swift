/// DCCP carried two ways: directly in IPv4 (protocol 33, RFC 4340) or inside a UDP
/// datagram (DCCP-UDP, RFC 6773), as over kernel sockets, since Linux no longer has DCCP
/// sockets.
///
/// In the UDP encapsulation implemented here the DCCP header follows the UDP header
/// whole, its own ports included, so one UDP port can carry several DCCP connections.
/// The DCCP checksum is computed as RFC 4340 section 9 says, over the IPv4 pseudo-header
/// of the datagram that carries it (protocol 17) and the DCCP packet; the UDP checksum
/// is zero (RFC 6773 lets the DCCP checksum cover the data).
extension ParsedFrame {
    /// Where the DCCP packet starts and how long it is: at L4 for protocol 33, after
    /// the UDP header for DCCP-UDP (`udpEncapsulated`). Nil for a frame that is neither.
    @inlinable
    public func dccpPacket(udpEncapsulated: Bool) -> (offset: Int, length: Int)? {
        if layers.contains(.dccp) {
            return (Int(l4Offset), Int(frameLength) &- Int(l4Offset))
        }
        if udpEncapsulated && layers.contains(.udp) {
            return (Int(payloadOffset), Int(payloadLength))
        }
        return nil
    }
}

extension FrameBuilder {
    /// Bytes in front of a DCCP header: Ethernet + IPv4 (+ UDP when encapsulated).
    @inlinable public static func dccpOffset(udpEncapsulated: Bool) -> Int {
        EthernetHeader.length + IPv4Header.minimumLength + (udpEncapsulated ? UDPHeader.length : 0)
    }

    /// Writes a whole DCCP Data frame (X=1, no options) carrying `count` bytes from
    /// `payload` into `buffer`, over IPv4 or inside UDP; returns the frame length.
    /// When encapsulated, `endpoints`' ports are the UDP ports and `dccpPorts` the DCCP
    /// ones; otherwise `dccpPorts` are the only ports.
    @discardableResult
    public static func dccpData(into buffer: UnsafeMutableRawBufferPointer, endpoints e: Endpoints,
                                udpEncapsulated: Bool, dccpPorts: (source: UInt16, destination: UInt16),
                                sequence: UInt64, payload: UnsafeRawPointer, count: Int) throws(WireError) -> Int {
        let dccpLength = DCCPHeader.genericLength(extended: true) &+ count
        let offset = dccpOffset(udpEncapsulated: udpEncapsulated)
        let total = offset &+ dccpLength
        try require(buffer, total, .dccp)
        let base = buffer.baseAddress!
        writeEthernet(at: base, e)
        let ip = IPv4Header.write(at: base + 14, totalLength: total &- 14,
                                  protocolNumber: udpEncapsulated ? IPv4Header.Proto.udp.rawValue : IPv4Header.Proto.dccp.rawValue,
                                  source: e.source, destination: e.destination)
        if udpEncapsulated {
            let udp = UDPHeader(unchecked: base + 34)
            udp.sourcePort = e.sourcePort
            udp.destinationPort = e.destinationPort
            udp.length = UDPHeader.length &+ dccpLength
            base.storeBE16(0, at: 40)
        }
        let dccp = DCCPHeader.write(at: base + offset, type: .data, extended: true, sourcePort: dccpPorts.source,
                                    destinationPort: dccpPorts.destination, sequence: sequence)
        (base + offset + dccp.headerLength).copyMemory(from: payload, byteCount: count)
        try dccp.updateChecksum(ip: ip, packetLength: dccpLength)
        return total
    }

    /// Turns a received DCCP Data frame, whose DCCP packet sits at `dccpOffset`, into
    /// its Ack in place: Ack with `acknowledgement`, DCCP (and UDP) ports, IPv4
    /// addresses and MACs swapped, lengths and checksums fixed. Returns the new frame
    /// length, or nil if the packet cannot become an Ack (short sequence numbers, or no
    /// room).
    public static func rewriteDCCPDataAsAck(_ frame: UnsafeMutableRawPointer, capacity: Int, parsed f: ParsedFrame,
                                            dccpOffset: Int, acknowledgement: UInt64) -> Int? {
        guard let length = DCCPHeader.rewriteAsAck(at: frame + dccpOffset, capacity: capacity &- dccpOffset) else { return nil }
        let dccp = DCCPHeader(unchecked: frame + dccpOffset, headerLength: length, type: .ack, extended: true)
        dccp.setAcknowledgementNumber(acknowledgement)
        dccp.swapPorts()
        let l3 = Int(f.l3Offset), l4 = Int(f.l4Offset)
        let ip = IPv4Header(unchecked: frame + l3, headerLength: l4 &- l3)
        ip.swapAddresses()
        let total = dccpOffset &+ length
        frame.storeBE16(UInt16(truncatingIfNeeded: total &- l3), at: l3 &+ 2)
        ip.updateChecksum()
        if dccpOffset != l4 {
            let udp = UDPHeader(unchecked: frame + l4)
            udp.swapPorts()
            udp.length = total &- l4
            frame.storeBE16(0, at: l4 &+ 6)
        }
        (try? EthernetHeader(UnsafeMutableRawBufferPointer(start: frame, count: total)))?.swapAddresses()
        guard (try? dccp.updateChecksum(ip: ip, packetLength: length)) != nil else { return nil }
        return total
    }
}
