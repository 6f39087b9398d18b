/// One frame in a buffer a port owns. Laid out exactly like the DPDK shim's
/// `struct cdpdk_packet` (a test checks the offsets), so a burst is filled in place.
///
/// Invariant: `data ..< data + length` lies within the buffer; `capacity` counts bytes
/// from `data` to the buffer's end. `owner` is the port's handle for freeing the buffer
/// (an mbuf, or the start of a pool buffer) and must be handed back to the port that
/// produced it, exactly once.
public struct Packet: BitwiseCopyable, @unchecked Sendable {
    public var owner: UnsafeMutableRawPointer?
    public var data: UnsafeMutableRawPointer
    public var length: UInt32
    /// A hash the device computed (RSS), valid when `flags` has `.deviceHash`.
    public var hash: UInt32
    public var capacity: UInt32
    public var flags: Flags
    /// Stream ports: the connection this data came from or goes to.
    public var flow: UInt32
    /// Where the IP and the transport header start, as the steering pipeline found
    /// them when it parsed the frame (or as a frame builder wrote them), so that no
    /// core parses the frame again (as an mbuf's `l2_len` and `l3_len`); 0 until then.
    /// They describe the frame as parsed: an edit that moves headers must update them.
    public var l3Offset: UInt8 = 0
    public var l4Offset: UInt8 = 0
    public var reserved: UInt16 = 0

    public struct Flags: OptionSet, BitwiseCopyable, Sendable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        public static let deviceHash = Flags(rawValue: 1)
        public static let multiSegment = Flags(rawValue: 2)
        /// The datagram was longer than the buffer and was cut.
        public static let truncated = Flags(rawValue: 4)
        /// The frame's IPv4 header checksum is known to be right, so a parser need not
        /// check it: a kernel port wrote the header itself, as a NIC marks a header it
        /// verified (DPDK's `RTE_MBUF_F_RX_IP_CKSUM_GOOD`).
        public static let headerChecksumGood = Flags(rawValue: 8)
    }

    @inlinable
    public init(owner: UnsafeMutableRawPointer?, data: UnsafeMutableRawPointer, length: UInt32,
                capacity: UInt32, hash: UInt32 = 0, flags: Flags = [], flow: UInt32 = 0) {
        self.owner = owner
        self.data = data
        self.length = length
        self.hash = hash
        self.capacity = capacity
        self.flags = flags
        self.flow = flow
    }

    /// The frame's bytes.
    @inlinable public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: data, count: Int(length))
    }

    /// The frame's bytes as an array (tests and slow paths only: it allocates).
    public var byteArray: [UInt8] { Array(UnsafeRawBufferPointer(bytes)) }
}
