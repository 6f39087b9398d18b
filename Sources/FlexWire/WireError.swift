/// Why a frame could not be read or written. Parsers report these; nothing in FlexWire
/// traps on bad input.
public enum WireError: Error, Equatable, Sendable {
    /// The buffer ends before the named header does.
    case truncated(Layer, needed: Int, available: Int)
    /// A header field contradicts the rest of the packet (a length, a version, an offset).
    case inconsistent(Layer, String)
    /// A checksum does not verify.
    case badChecksum(Layer)
    /// A field is outside what the protocol allows (e.g. an unknown DCCP type).
    case unsupported(Layer, String)

    /// The protocol layer an error names.
    public enum Layer: String, Sendable {
        case ethernet, vlan, ipv4, ipv6, udp, tcp, dccp, payload
    }

    /// The layer this error is about.
    public var layer: Layer {
        switch self {
        case .truncated(let l, _, _), .inconsistent(let l, _), .badChecksum(let l), .unsupported(let l, _): return l
        }
    }
}

extension WireError: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .truncated(layer, needed, available):
            return "\(layer.rawValue): truncated (needs \(needed) bytes, has \(available))"
        case let .inconsistent(layer, why): return "\(layer.rawValue): \(why)"
        case let .badChecksum(layer): return "\(layer.rawValue): bad checksum"
        case let .unsupported(layer, why): return "\(layer.rawValue): unsupported \(why)"
        }
    }
}
