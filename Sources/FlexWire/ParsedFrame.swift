/// The header fields of one frame, parsed once so that steering stages can match on them
/// without re-reading the packet. Offsets are from the start of the frame.
///
/// Invariant: every offset and length lies within the frame that was parsed, and a
/// layer's fields are meaningful only when `layers` contains that layer.
public struct ParsedFrame: Sendable {
    public struct Layers: OptionSet, Sendable {
        public let rawValue: UInt8
        @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }
        @inlinable public static var vlan: Layers { Layers(rawValue: 1 << 0) }
        @inlinable public static var ipv4: Layers { Layers(rawValue: 1 << 1) }
        @inlinable public static var udp: Layers { Layers(rawValue: 1 << 2) }
        @inlinable public static var tcp: Layers { Layers(rawValue: 1 << 3) }
        @inlinable public static var dccp: Layers { Layers(rawValue: 1 << 4) }
        @inlinable public static var fragment: Layers { Layers(rawValue: 1 << 5) }
        @inlinable public static var ipv6: Layers { Layers(rawValue: 1 << 6) }
        /// Any L4 header with ports.
        @inlinable public static var ports: Layers { Layers(rawValue: 1 << 2 | 1 << 3 | 1 << 4) }
    }

    public var layers: Layers = []
    public var etherType: UInt16 = 0
    public var vlanID: UInt16 = 0
    public var l3Offset: UInt16 = 0
    public var l4Offset: UInt16 = 0
    public var payloadOffset: UInt16 = 0
    public var payloadLength: UInt16 = 0
    /// Length of the frame up to the end of the IP datagram (Ethernet padding excluded).
    public var frameLength: UInt16 = 0
    public var ipProtocol: UInt8 = 0
    public var tcpFlags: UInt8 = 0
    public var dccpType: UInt8 = 0
    /// IPv4: the addresses. IPv6: each address folded to 32 bits (`IPv6Header.fold`),
    /// for grouping and hashing; the addresses themselves are in the frame.
    public var sourceAddress: UInt32 = 0
    public var destinationAddress: UInt32 = 0
    public var sourcePort: UInt16 = 0
    public var destinationPort: UInt16 = 0

    @inlinable public init() {}

    /// Parses Ethernet (one optional 802.1Q tag), IPv4 (options allowed, header checksum
    /// verified unless `verifyingChecksum` is false: a frame the pipeline already
    /// parsed) or IPv6 (extension headers walked) and, unless `transport` is false, UDP,
    /// TCP or DCCP. Another frame parses at L2 only, and so does IPv6 when `ipv6` is
    /// false (steering programs that match no IPv6 frame keep IPv4-only behaviour); a
    /// fragment other than the first stops at L3. Truncated or inconsistent headers throw.
    @inlinable
    public init(parsing frame: UnsafeMutableRawBufferPointer, verifyingChecksum: Bool = true, transport: Bool = true,
                ipv6: Bool = true) throws(WireError) {
        let eth = try EthernetHeader(frame)
        var offset = EthernetHeader.length
        var type = eth.etherType
        if type == EthernetHeader.EtherType.vlan.rawValue {
            guard frame.count >= offset &+ 4 else {
                throw .truncated(.vlan, needed: offset &+ 4, available: frame.count)
            }
            let r = UnsafeRawPointer(eth.base)
            vlanID = r.loadBE16(at: offset) & 0x0FFF
            type = r.loadBE16(at: offset &+ 2)
            offset &+= 4
            layers.insert(.vlan)
        }
        etherType = type
        l3Offset = UInt16(truncatingIfNeeded: offset)
        frameLength = UInt16(truncatingIfNeeded: frame.count)
        if ipv6 && type == EthernetHeader.EtherType.ipv6.rawValue {
            let ip = try IPv6Header(UnsafeMutableRawBufferPointer(rebasing: frame[offset...]))
            layers.insert(.ipv6)
            ipProtocol = ip.upperProtocol
            sourceAddress = IPv6Header.fold(ip.source)
            destinationAddress = IPv6Header.fold(ip.destination)
            let l4 = offset &+ ip.headersLength
            let end = offset &+ ip.totalLength
            setDatagram(l4: l4, end: end)
            if let position = ip.fragmentPosition, position.offset != 0 || position.more {
                layers.insert(.fragment)
                if position.offset != 0 { return }
            }
            guard transport else { return }
            try parseTransport(frame, l4: l4, end: end)
            return
        }
        guard type == EthernetHeader.EtherType.ipv4.rawValue else {
            l4Offset = l3Offset
            payloadOffset = l3Offset
            payloadLength = UInt16(truncatingIfNeeded: frame.count &- offset)
            return
        }
        let ipBytes = UnsafeMutableRawBufferPointer(rebasing: frame[offset...])
        let ip = try IPv4Header(ipBytes, verifyChecksum: verifyingChecksum)
        layers.insert(.ipv4)
        ipProtocol = ip.protocolNumber
        sourceAddress = ip.source.value
        destinationAddress = ip.destination.value
        let l4 = offset &+ ip.headerLength
        let end = offset &+ ip.totalLength
        setDatagram(l4: l4, end: end)
        if ip.isFragment {
            layers.insert(.fragment)
            // Only a first fragment has the L4 header; leave later ones at L3.
            if UnsafeRawPointer(ip.base).loadBE16(at: 6) & 0x1FFF != 0 { return }
        }
        guard transport else { return }
        try parseTransport(frame, l4: l4, end: end)
    }

    /// An IP datagram whose upper layer starts at `l4` and which ends at `end`: until a
    /// transport header is parsed, all of the upper layer is payload.
    @inlinable @inline(__always)
    mutating func setDatagram(l4: Int, end: Int) {
        frameLength = UInt16(truncatingIfNeeded: end)
        l4Offset = UInt16(truncatingIfNeeded: l4)
        payloadOffset = l4Offset
        payloadLength = UInt16(truncatingIfNeeded: end &- l4)
    }

    /// Parses the UDP, TCP or DCCP header at `l4` of an IP datagram ending at `end`
    /// (`ipProtocol` says which; another protocol leaves the payload at `l4`).
    @inlinable @inline(__always)
    mutating func parseTransport(_ frame: UnsafeMutableRawBufferPointer, l4: Int, end: Int) throws(WireError) {
        let l4Bytes = UnsafeMutableRawBufferPointer(start: frame.baseAddress! + l4, count: end &- l4)
        let headerLength: Int
        switch ipProtocol {
        case IPv4Header.Proto.udp.rawValue:
            let udp = try UDPHeader(l4Bytes)
            layers.insert(.udp)
            sourcePort = udp.sourcePort
            destinationPort = udp.destinationPort
            headerLength = UDPHeader.length
            payloadLength = UInt16(truncatingIfNeeded: udp.length &- UDPHeader.length)
            frameLength = UInt16(truncatingIfNeeded: l4 &+ udp.length)
        case IPv4Header.Proto.tcp.rawValue:
            let tcp = try TCPHeader(l4Bytes)
            layers.insert(.tcp)
            sourcePort = tcp.sourcePort
            destinationPort = tcp.destinationPort
            tcpFlags = tcp.flags.rawValue
            headerLength = tcp.headerLength
            payloadLength = UInt16(truncatingIfNeeded: l4Bytes.count &- headerLength)
        case IPv4Header.Proto.dccp.rawValue:
            let dccp = try DCCPHeader(l4Bytes)
            layers.insert(.dccp)
            sourcePort = dccp.sourcePort
            destinationPort = dccp.destinationPort
            dccpType = dccp.type.rawValue
            headerLength = dccp.headerLength
            payloadLength = UInt16(truncatingIfNeeded: l4Bytes.count &- headerLength)
        default:
            return
        }
        payloadOffset = UInt16(truncatingIfNeeded: l4 &+ headerLength)
    }

    /// Whether the frame carries an IP datagram (IPv4 or IPv6).
    @inlinable public var hasIP: Bool { !layers.isDisjoint(with: [.ipv4, .ipv6]) }

    /// True if the frame carries an L4 header with ports.
    @inlinable public var hasPorts: Bool { !layers.isDisjoint(with: .ports) }
}
