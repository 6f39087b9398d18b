import FlexWire

/// Test helpers shared by the test targets: frames as byte arrays.
public enum Frames {
    public static let endpoints = FrameBuilder.Endpoints(
        sourceMAC: MACAddress(2, 0, 0, 0, 0, 1), destinationMAC: MACAddress(2, 0, 0, 0, 0, 2),
        source: IPv4Address(10, 0, 0, 1), destination: IPv4Address(10, 0, 0, 2), sourcePort: 40000, destinationPort: 11211)

    public static func build(_ body: (UnsafeMutableRawBufferPointer) throws -> Int) rethrows -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: 2048)
        let n = try buffer.withUnsafeMutableBytes { try body($0) }
        return Array(buffer[..<n])
    }

    public static func udp(_ payload: [UInt8] = Array("hello".utf8), _ e: FrameBuilder.Endpoints = endpoints) -> [UInt8] {
        build { try! FrameBuilder.udp(into: $0, endpoints: e, payload: payload) }
    }

    public static func tcp(_ payload: [UInt8] = Array("hello".utf8)) -> [UInt8] {
        build { try! FrameBuilder.tcp(into: $0, endpoints: endpoints, payload: payload) }
    }

    public static func dccp(_ type: DCCPHeader.PacketType, extended: Bool = true, sequence: UInt64 = 0x1234_5678_9ABC,
                     acknowledgement: UInt64 = 0, coverage: UInt8 = 0, payload: [UInt8] = Array("tuple".utf8)) -> [UInt8] {
        build {
            try! FrameBuilder.dccp(into: $0, endpoints: endpoints, type: type, extended: extended, sequence: sequence,
                                   acknowledgement: acknowledgement, checksumCoverage: coverage, payload: payload)
        }
    }

    public static func parse(_ frame: [UInt8]) throws -> ParsedFrame {
        // Copy into an exactly-sized allocation so reading past the end would be caught.
        let b = UnsafeMutableRawBufferPointer.allocate(byteCount: frame.count, alignment: 8)
        defer { b.deallocate() }
        b.copyBytes(from: frame)
        return try ParsedFrame(parsing: b)
    }
}
