import FlexIO

/// What the steering pipeline hands a core through its queue: a packet with the
/// pipeline's results attached, or a notice about a log segment. 56 bytes, so with its
/// ring flag it fills one cache line.
public struct Descriptor: BitwiseCopyable, @unchecked Sendable {
    public enum Kind: UInt8, BitwiseCopyable, Sendable {
        /// `packet` is a received frame the core now owns (release it to its port).
        case packet
        /// A malformed or unhandled frame for the slow path; `detail` is a `SlowPathReason`.
        case slowPath
        /// The pipeline appended a payload range to this queue's log: `record` points at
        /// the record's bytes in one of the queue's segments (`LogSegments.locate`,
        /// `LogSegments.recordLength`). `packet` is the frame it came from, which the
        /// core owns like any other (to reply in, then release).
        case logRecord
        /// Log segment `packet.flow` is full (`packet.length` bytes used, starting at
        /// `packet.data`); the pipeline writes no more into it until it is recycled.
        case segmentFull
    }

    public var packet: Packet
    /// The hash the pipeline computed, when a stage ran `write-hash`; else 0.
    public var hash: UInt32
    /// Where the application's data starts in the frame after `strip` (else 0).
    public var payloadOffset: UInt16
    public var kind: Kind
    /// Slow-path reason, or the index of the stage that decided.
    public var detail: UInt8
    /// `logRecord`: the record's bytes in a log segment; else nil.
    public var record: UnsafeMutableRawPointer?

    @inlinable
    public init(packet: Packet, kind: Kind = .packet, hash: UInt32 = 0, payloadOffset: UInt16 = 0, detail: UInt8 = 0,
                record: UnsafeMutableRawPointer? = nil) {
        self.packet = packet
        self.hash = hash
        self.payloadOffset = payloadOffset
        self.kind = kind
        self.detail = detail
        self.record = record
    }

    /// The bytes after `payloadOffset` (the stripped payload).
    @inlinable public var payload: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: packet.data + Int(payloadOffset), count: Int(packet.length) - Int(payloadOffset))
    }
}

/// Why a frame went to the slow path.
public enum SlowPathReason: UInt8, Sendable, CaseIterable {
    /// Headers truncated or inconsistent, or the IPv4 header checksum failed.
    case malformed = 1
    /// The L4 checksum failed (when the program verifies L4 checksums).
    case badChecksum = 2
    /// A stage or the program's default sent it there.
    case rule = 3
    /// A log append found no free segment.
    case logUnavailable = 4
    /// A stage's payload range lies outside the frame.
    case payloadOutOfRange = 5
}

/// The descriptor queue between the pipeline and one core.
public typealias DescriptorRing = SPSCRing<Descriptor>
