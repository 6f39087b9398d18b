/// IPv6 header view (RFC 8200) with its extension-header chain walked: hop-by-hop
/// options (0), routing (43), fragment (44), destination options (60) and the
/// authentication header (51) are stepped over to the upper-layer header. Valid once
/// made: version 6, payload length within the buffer, every extension header within
/// the payload.
public struct IPv6Header {
    public static let length = 40

    public let base: UnsafeMutableRawPointer
    /// The upper-layer protocol (the last next-header value: 6 TCP, 17 UDP, 58 ICMPv6,
    /// 59 no next header, 50 ESP, or a tunnelled 4 or 41).
    public let upperProtocol: UInt8
    /// Bytes from the start of the IPv6 header to the upper-layer header.
    public let headersLength: Int
    /// Offset of the fragment header from the start of the IPv6 header (nil: none).
    public let fragmentHeaderOffset: Int?
    /// Fixed header plus payload: the datagram's length.
    public let totalLength: Int

    /// At most this many extension headers are walked (a longer chain is refused, as
    /// Snort's decoder flags one).
    public static let maximumExtensionHeaders = 16

    @inlinable
    public init(_ bytes: UnsafeMutableRawBufferPointer) throws(WireError) {
        guard bytes.count >= Self.length, let b = bytes.baseAddress else {
            throw .truncated(.ipv6, needed: Self.length, available: bytes.count)
        }
        let r = UnsafeRawPointer(b)
        guard r.load(as: UInt8.self) >> 4 == 6 else { throw .inconsistent(.ipv6, "version \(r.load(as: UInt8.self) >> 4)") }
        let total = Self.length &+ Int(r.loadBE16(at: 4))
        guard total <= bytes.count else { throw .truncated(.ipv6, needed: total, available: bytes.count) }
        var next = r.load(fromByteOffset: 6, as: UInt8.self)
        var offset = Self.length
        var fragment: Int? = nil
        var walked = 0
        walk: while true {
            let headerLength: Int
            switch next {
            case 0, 43, 44, 51, 60:
                guard offset &+ 8 <= total else {
                    // Past a fragment header lies the fragmentable part, which a fragment
                    // may cut short: the walk ends at it.
                    if fragment != nil { break walk }
                    throw .truncated(.ipv6, needed: offset &+ 8, available: total)
                }
                switch next {
                case 44:
                    guard fragment == nil else { throw .inconsistent(.ipv6, "two fragment headers") }
                    fragment = offset
                    headerLength = 8
                case 51: headerLength = (Int(r.load(fromByteOffset: offset &+ 1, as: UInt8.self)) &+ 2) &* 4
                default: headerLength = (Int(r.load(fromByteOffset: offset &+ 1, as: UInt8.self)) &+ 1) &* 8
                }
            default:
                break walk
            }
            guard offset &+ headerLength <= total else {
                if fragment != nil && fragment != offset { break walk }
                throw .truncated(.ipv6, needed: offset &+ headerLength, available: total)
            }
            walked &+= 1
            guard walked <= Self.maximumExtensionHeaders else { throw .inconsistent(.ipv6, "more than \(Self.maximumExtensionHeaders) extension headers") }
            next = r.load(fromByteOffset: offset, as: UInt8.self)
            offset &+= headerLength
            // Past a non-first fragment's fragment header lies the middle of the upper
            // layer, not a header: stop there.
            if let f = fragment, f &+ 8 == offset, r.loadBE16(at: f &+ 2) & 0xFFF8 != 0 { break walk }
        }
        base = b
        upperProtocol = next
        headersLength = offset
        fragmentHeaderOffset = fragment
        totalLength = total
    }

    /// Whether the datagram is a fragment (it has a fragment header; an atomic
    /// fragment, offset 0 without more, is one too).
    @inlinable public var isFragment: Bool { fragmentHeaderOffset != nil }

    /// The fragment's offset in bytes and whether more follow (nil: not a fragment).
    @inlinable public var fragmentPosition: (offset: Int, more: Bool)? {
        guard let f = fragmentHeaderOffset else { return nil }
        let word = UnsafeRawPointer(base).loadBE16(at: f &+ 2)
        return (Int(word & 0xFFF8), word & 1 != 0)
    }

    /// The 32-bit fragment identification (0 when not a fragment).
    @inlinable public var fragmentIdentification: UInt32 {
        guard let f = fragmentHeaderOffset else { return 0 }
        return UInt32(UnsafeRawPointer(base).loadBE16(at: f &+ 4)) << 16 | UInt32(UnsafeRawPointer(base).loadBE16(at: f &+ 6))
    }

    @inlinable public var hopLimit: UInt8 { base.load(fromByteOffset: 7, as: UInt8.self) }
    @inlinable public var trafficClass: UInt8 { UInt8(truncatingIfNeeded: UnsafeRawPointer(base).loadBE16(at: 0) >> 4) }
    /// The source and destination addresses as 128-bit numbers (network order read).
    @inlinable public var source: UInt128 { Self.address(UnsafeRawPointer(base) + 8) }
    @inlinable public var destination: UInt128 { Self.address(UnsafeRawPointer(base) + 24) }

    /// The checksum of the pseudo-header (RFC 8200 8.1) that TCP, UDP and ICMPv6
    /// checksums cover: both addresses, the upper-layer length and protocol.
    @inlinable
    public func pseudoHeaderChecksum(l4Length: Int, protocol next: UInt8) -> InternetChecksum {
        Self.pseudoHeaderChecksum(header: UnsafeRawPointer(base), l4Length: l4Length, protocol: next)
    }

    /// The same for the IPv6 header at `header`.
    @inlinable
    public static func pseudoHeaderChecksum(header: UnsafeRawPointer, l4Length: Int, protocol next: UInt8) -> InternetChecksum {
        var sum = InternetChecksum()
        sum.add(bytes: header + 8, count: 32)
        sum.add(UInt32(truncatingIfNeeded: l4Length))
        sum.add(UInt32(next))
        return sum
    }

    @inlinable
    public static func address(_ p: UnsafeRawPointer) -> UInt128 {
        UInt128(UInt64(bigEndian: p.loadUnaligned(as: UInt64.self))) << 64 | UInt128(UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt64.self)))
    }

    /// XOR of an address's four 32-bit words: what `ParsedFrame` keeps in its 32-bit
    /// address fields for IPv6 (enough to group and hash; not the address).
    @inlinable
    public static func fold(_ a: UInt128) -> UInt32 {
        UInt32(truncatingIfNeeded: a >> 96) ^ UInt32(truncatingIfNeeded: a >> 64) ^ UInt32(truncatingIfNeeded: a >> 32) ^ UInt32(truncatingIfNeeded: a)
    }
}
