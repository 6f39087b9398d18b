import CPcap

/// Errors reading or writing capture files; they name the file and, for a bad record,
/// the packet number (1-based).
public struct PcapError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(description: String) { self.description = description }
}

/// Link types this project reads.
public enum LinkType: Int32, Sendable {
    case ethernet = 1       // DLT_EN10MB
    case raw = 12           // DLT_RAW on Linux (LINKTYPE_RAW, 101, in the file)
    case linuxCooked = 113  // DLT_LINUX_SLL
}

/// Reads a pcap or pcapng file record by record through libpcap. A truncated or
/// corrupt file ends with a `PcapError` naming the packet number, never a crash.
public final class PcapReader {
    public let path: String
    public let linkType: Int32
    let handle: OpaquePointer
    /// Records read so far.
    public private(set) var packetNumber = 0

    public init(path: String) throws {
        self.path = path
        var err = [CChar](repeating: 0, count: Int(PCAP_ERRBUF_SIZE))
        guard let h = pcap_open_offline_with_tstamp_precision(path, UInt32(PCAP_TSTAMP_PRECISION_NANO), &err) else {
            throw PcapError(description: "\(path): \(String(cString: err))")
        }
        handle = h
        linkType = pcap_datalink(h)
    }

    deinit { pcap_close(handle) }

    /// One record: capture time in nanoseconds, the bytes captured and the length the
    /// packet had on the wire.
    public struct Record {
        public var timestampNanoseconds: UInt64
        public var bytes: UnsafeRawBufferPointer
        public var originalLength: Int
    }

    /// The next record (valid until the next call), nil at the end of the file.
    public func next() throws -> Record? {
        var header: UnsafeMutablePointer<pcap_pkthdr>?
        var data: UnsafePointer<UInt8>?
        let rc = pcap_next_ex(handle, &header, &data)
        switch rc {
        case 1:
            packetNumber += 1
            let h = header!.pointee
            // The file's seconds are an unsigned 32-bit field (good until 2106); libpcap
            // may hand them over sign-extended from 2038 on, so only the low 32 bits count.
            // The fraction is below 10^9 in a valid file; a larger one is taken as is.
            let seconds = UInt64(UInt32(truncatingIfNeeded: h.ts.tv_sec))
            let fraction = UInt64(UInt32(truncatingIfNeeded: h.ts.tv_usec))
            return Record(timestampNanoseconds: seconds &* 1_000_000_000 &+ fraction,
                          bytes: UnsafeRawBufferPointer(start: data, count: Int(h.caplen)),
                          originalLength: Int(h.len))
        case PCAP_ERROR_BREAK:
            return nil
        default:
            throw PcapError(description: "\(path): packet \(packetNumber + 1): \(String(cString: pcap_geterr(handle)))")
        }
    }
}

/// Writes a pcap file (nanosecond timestamps) through libpcap.
public final class PcapWriter {
    public let path: String
    let pcap: OpaquePointer
    let dumper: OpaquePointer
    public private(set) var packetsWritten = 0

    public init(path: String, linkType: LinkType = .ethernet, snapLength: Int32 = 65535) throws {
        self.path = path
        guard let p = pcap_open_dead_with_tstamp_precision(linkType.rawValue, snapLength, UInt32(PCAP_TSTAMP_PRECISION_NANO)) else {
            throw PcapError(description: "\(path): cannot create a pcap handle")
        }
        guard let d = pcap_dump_open(p, path) else {
            let why = String(cString: pcap_geterr(p))
            pcap_close(p)
            throw PcapError(description: "\(path): \(why)")
        }
        pcap = p
        dumper = d
    }

    deinit {
        pcap_dump_close(dumper)
        pcap_close(pcap)
    }

    public func write(_ bytes: UnsafeRawBufferPointer, timestampNanoseconds: UInt64 = 0) {
        var h = pcap_pkthdr()
        h.ts.tv_sec = Int(timestampNanoseconds / 1_000_000_000)
        h.ts.tv_usec = Int(timestampNanoseconds % 1_000_000_000)
        h.caplen = UInt32(bytes.count)
        h.len = UInt32(bytes.count)
        pcap_dump(UnsafeMutableRawPointer(dumper).assumingMemoryBound(to: UInt8.self), &h,
                  bytes.baseAddress?.assumingMemoryBound(to: UInt8.self))
        packetsWritten += 1
    }

    public func write(_ bytes: [UInt8], timestampNanoseconds: UInt64 = 0) {
        bytes.withUnsafeBytes { write($0, timestampNanoseconds: timestampNanoseconds) }
    }

    public func flush() { pcap_dump_flush(dumper) }
}
