/// Writes whole Ethernet/IPv4 frames (UDP, TCP or DCCP) with correct lengths and
/// checksums into caller memory: test traffic, load generators, synthesized headers.
public enum FrameBuilder {
    /// Bytes of Ethernet + IPv4 (no options) + UDP headers.
    public static let udpHeadersLength = EthernetHeader.length + IPv4Header.minimumLength + UDPHeader.length
    /// Bytes of Ethernet + IPv4 (no options) + TCP (no options) headers.
    public static let tcpHeadersLength = EthernetHeader.length + IPv4Header.minimumLength + TCPHeader.minimumLength

    /// The addresses of a frame: L2, L3 and L4 ends.
    public struct Endpoints: Sendable, Equatable {
        public var sourceMAC: MACAddress
        public var destinationMAC: MACAddress
        public var source: IPv4Address
        public var destination: IPv4Address
        public var sourcePort: UInt16
        public var destinationPort: UInt16

        public init(sourceMAC: MACAddress = .zero, destinationMAC: MACAddress = .zero,
                    source: IPv4Address, destination: IPv4Address, sourcePort: UInt16, destinationPort: UInt16) {
            self.sourceMAC = sourceMAC
            self.destinationMAC = destinationMAC
            self.source = source
            self.destination = destination
            self.sourcePort = sourcePort
            self.destinationPort = destinationPort
        }

        /// The endpoints of a reply to an IPv4 UDP or TCP frame whose IP and transport
        /// headers start at `l3Offset` and `l4Offset` (where `ParsedFrame` found them;
        /// the steering pipeline records them in the packet), addresses, ports and MACs
        /// swapped, read straight from the headers, so a core need not parse it again.
        public init(replyingTo frame: UnsafeRawPointer, l3Offset: Int, l4Offset: Int) {
            self.init(sourceMAC: .load(from: frame), destinationMAC: .load(from: frame + 6),
                      source: IPv4Address(frame.loadBE32(at: l3Offset + 16)),
                      destination: IPv4Address(frame.loadBE32(at: l3Offset + 12)),
                      sourcePort: frame.loadBE16(at: l4Offset + 2), destinationPort: frame.loadBE16(at: l4Offset))
        }

        /// The same endpoints seen from the other side.
        public var reversed: Endpoints {
            Endpoints(sourceMAC: destinationMAC, destinationMAC: sourceMAC, source: destination,
                      destination: source, sourcePort: destinationPort, destinationPort: sourcePort)
        }
    }

    /// The IPv4 header of `frame` if it is laid out as this builder writes frames:
    /// Ethernet II, IPv4 without options, unfragmented, carrying `protocolNumber`, its
    /// total length the frame's (no padding); nil for any other layout. For readers that
    /// take such frames at fixed offsets and parse only the others.
    @inlinable @inline(__always)
    public static func builtIPv4(_ frame: UnsafeMutableRawBufferPointer, protocolNumber: UInt8) -> IPv4Header? {
        let l3 = EthernetHeader.length
        guard frame.count >= l3 + IPv4Header.minimumLength,
              let eth = try? EthernetHeader(frame), eth.etherType == EthernetHeader.EtherType.ipv4.rawValue,
              let ip = try? IPv4Header(UnsafeMutableRawBufferPointer(rebasing: frame[l3...])),
              ip.headerLength == IPv4Header.minimumLength, ip.protocolNumber == protocolNumber,
              !ip.isFragment, ip.totalLength == frame.count - l3 else { return nil }
        return ip
    }

    /// Writes an IPv4 frame's Ethernet header at `base` (the caller checked the room).
    @inline(__always)
    static func writeEthernet(at base: UnsafeMutableRawPointer, _ e: Endpoints) {
        e.destinationMAC.store(to: base)
        e.sourceMAC.store(to: base + 6)
        base.storeBE16(EthernetHeader.EtherType.ipv4.rawValue, at: 12)
    }

    static func require(_ buffer: UnsafeMutableRawBufferPointer, _ needed: Int, _ layer: WireError.Layer) throws(WireError) {
        guard buffer.count >= needed else { throw .truncated(layer, needed: needed, available: buffer.count) }
    }

    /// Writes headers for a UDP datagram whose `payloadLength` bytes already sit at
    /// offset `udpHeadersLength` (or are written there later when `checksum` is false).
    /// Returns the frame length.
    @discardableResult
    public static func writeUDPHeaders(into buffer: UnsafeMutableRawBufferPointer, endpoints e: Endpoints,
                                       payloadLength: Int, checksum: Bool = true) throws(WireError) -> Int {
        let total = udpHeadersLength + payloadLength
        try require(buffer, total, .udp)
        guard payloadLength <= 65_507 else { throw .inconsistent(.udp, "payload of \(payloadLength) bytes") }
        let base = buffer.baseAddress!
        writeEthernet(at: base, e)
        let ip = IPv4Header.write(at: base + 14, totalLength: 28 + payloadLength, protocolNumber: 17,
                                  source: e.source, destination: e.destination)
        let udp = UDPHeader(unchecked: base + 34)
        udp.sourcePort = e.sourcePort
        udp.destinationPort = e.destinationPort
        udp.length = 8 + payloadLength
        base.storeBE16(0, at: 40)
        if checksum { udp.updateChecksum(ip: ip) }
        return total
    }

    /// Writes a whole UDP frame carrying `payload`; returns its length.
    @discardableResult
    public static func udp(into buffer: UnsafeMutableRawBufferPointer, endpoints: Endpoints,
                           payload: some Collection<UInt8>) throws(WireError) -> Int {
        try require(buffer, udpHeadersLength + payload.count, .udp)
        UnsafeMutableRawBufferPointer(rebasing: buffer[udpHeadersLength...]).copyBytes(from: payload)
        return try writeUDPHeaders(into: buffer, endpoints: endpoints, payloadLength: payload.count)
    }

    /// Writes a whole TCP frame (no options) carrying `payload`; returns its length.
    @discardableResult
    public static func tcp(into buffer: UnsafeMutableRawBufferPointer, endpoints e: Endpoints,
                           payload: some Collection<UInt8>, flags: TCPHeader.Flags = [.ack, .psh],
                           sequence: UInt32 = 0, acknowledgement: UInt32 = 0) throws(WireError) -> Int {
        try require(buffer, tcpHeadersLength + payload.count, .tcp)
        UnsafeMutableRawBufferPointer(rebasing: buffer[tcpHeadersLength...]).copyBytes(from: payload)
        return try writeTCPHeaders(into: buffer, endpoints: e, payloadLength: payload.count, flags: flags,
                                   sequence: sequence, acknowledgement: acknowledgement)
    }

    /// Writes headers (no options) for a TCP segment whose `payloadLength` bytes already
    /// sit at offset `tcpHeadersLength`. Returns the frame length. Without `checksum`
    /// the TCP and IPv4 header checksums are left 0: for a frame only a kernel TCP port
    /// reads, which sends its payload on a socket (the generic `tcp` is not
    /// specialized across modules: from the server's hot path it looked up generic
    /// metadata and copied byte by byte).
    @discardableResult
    public static func writeTCPHeaders(into buffer: UnsafeMutableRawBufferPointer, endpoints e: Endpoints,
                                       payloadLength: Int, flags: TCPHeader.Flags = [.ack, .psh], sequence: UInt32 = 0,
                                       acknowledgement: UInt32 = 0, checksum: Bool = true) throws(WireError) -> Int {
        let total = tcpHeadersLength + payloadLength
        try require(buffer, total, .tcp)
        guard payloadLength <= 65_495 else { throw .inconsistent(.tcp, "payload of \(payloadLength) bytes") }
        let base = buffer.baseAddress!
        writeEthernet(at: base, e)
        let ip = IPv4Header.write(at: base + 14, totalLength: 40 + payloadLength, protocolNumber: 6,
                                  source: e.source, destination: e.destination, checksum: checksum)
        let tcp = TCPHeader.write(at: base + 34, sourcePort: e.sourcePort, destinationPort: e.destinationPort,
                                  sequence: sequence, acknowledgement: acknowledgement, flags: flags)
        if checksum { tcp.updateChecksum(ip: ip, segmentLength: 20 + payloadLength) }
        return total
    }

    /// Writes a whole DCCP frame carrying `payload`; returns its length.
    @discardableResult
    public static func dccp(into buffer: UnsafeMutableRawBufferPointer, endpoints e: Endpoints,
                            type: DCCPHeader.PacketType, extended: Bool = true, sequence: UInt64,
                            acknowledgement: UInt64 = 0, checksumCoverage: UInt8 = 0,
                            payload: some Collection<UInt8>) throws(WireError) -> Int {
        let headerLength = DCCPHeader.genericLength(extended: extended)
            + (type.hasAcknowledgement ? DCCPHeader.ackLength(extended: extended) : 0)
            + ((type == .request || type == .response || type == .reset) ? 4 : 0)
        let l4 = 34
        let total = l4 + headerLength + payload.count
        try require(buffer, total, .dccp)
        let base = buffer.baseAddress!
        writeEthernet(at: base, e)
        UnsafeMutableRawBufferPointer(rebasing: buffer[(l4 + headerLength)...]).copyBytes(from: payload)
        let ip = IPv4Header.write(at: base + 14, totalLength: 20 + headerLength + payload.count, protocolNumber: 33,
                                  source: e.source, destination: e.destination)
        let dccp = DCCPHeader.write(at: base + l4, type: type, extended: extended, sourcePort: e.sourcePort,
                                    destinationPort: e.destinationPort, sequence: sequence,
                                    acknowledgement: acknowledgement, checksumCoverage: checksumCoverage)
        try dccp.updateChecksum(ip: ip, packetLength: headerLength + payload.count)
        return total
    }
}
