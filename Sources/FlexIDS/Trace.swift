import FlexIO
import Foundation

/// A packet trace held in memory as Ethernet frames, numbered from 1 in file order:
/// what a replay steers and instances inspect. Captures of other link types (Linux
/// cooked, raw IP, loopback, PPP, 802.11, radiotap; `supportedLinkTypes`) are given a
/// synthetic Ethernet header as they load, so everything after the loader sees one link
/// type; VLAN tags stay in place.
///
/// A truncated or corrupt file keeps the packets before the damage; `error` names the
/// packet number where reading stopped.
public final class Trace: @unchecked Sendable {
    public struct Record: Sendable {
        public var offset: Int
        public var length: Int
        public var timestampNanoseconds: UInt64
        /// 1-based number of the packet in its file.
        public var number: Int
    }

    public let path: String
    public private(set) var records: [Record] = []
    public private(set) var bytes: UnsafeMutableRawPointer
    private var capacity: Int
    private var used = 0
    /// Why loading stopped before the end of the file, if it did.
    public private(set) var error: String?
    /// Records skipped: longer than 65535 bytes, or carrying no network-layer packet
    /// (headers cut short, 802.11 management or encrypted frames, other PPP protocols).
    public private(set) var skipped = 0

    static let maximumFrame = 65535

    /// Loads `path`. An unreadable file or an unknown link type throws; damage later in
    /// the file ends the load early (see `error`).
    public init(path: String, limit: Int = .max) throws {
        self.path = path
        capacity = 1 << 20
        bytes = .allocate(byteCount: capacity, alignment: 64)
        let reader = try PcapReader(path: path)
        let link = reader.linkType
        guard Self.supportedLinkTypes.contains(link) else {
            throw PcapError(description: "\(path): link type \(link) is not supported (Ethernet, Linux cooked v1/v2, raw IP, "
                                       + "BSD and OpenBSD loopback, PPP, 802.11 and radiotap are)")
        }
        while records.count < limit {
            let record: PcapReader.Record?
            do { record = try reader.next() } catch { self.error = "\(error)"; break }
            guard let record else { break }
            let raw = record.bytes
            if link == 1 {
                guard raw.count <= Self.maximumFrame else { skipped += 1; continue }
                append(length: raw.count, timestampNanoseconds: record.timestampNanoseconds, number: reader.packetNumber) { out in
                    if raw.count > 0 { out.copyMemory(from: raw.baseAddress!, byteCount: raw.count) }
                }
                continue
            }
            // Other link types: the network-layer packet behind a synthetic Ethernet header.
            guard let (etherType, start) = Self.networkLayer(raw, link: link), start <= raw.count,
                  raw.count - start + 14 <= Self.maximumFrame else {
                skipped += 1
                continue
            }
            let l3 = UnsafeRawBufferPointer(rebasing: raw[start...])
            append(length: l3.count + 14, timestampNanoseconds: record.timestampNanoseconds, number: reader.packetNumber) { out in
                out.initializeMemory(as: UInt8.self, repeating: 0, count: 12)
                out.storeBytes(of: etherType.bigEndian, toByteOffset: 12, as: UInt16.self)
                if l3.count > 0 { (out + 14).copyMemory(from: l3.baseAddress!, byteCount: l3.count) }
            }
        }
    }

    /// Link types read: Ethernet (1), raw IP (12, 14, 101, 228, 229), BSD loopback (0),
    /// OpenBSD loopback (108), PPP (9), 802.11 (105), radiotap (127), Linux cooked
    /// capture v1 (113) and v2 (276).
    static let supportedLinkTypes: Set<Int32> = [0, 1, 9, 12, 14, 101, 105, 108, 113, 127, 228, 229, 276]

    /// The EtherType and start of the network-layer packet in a record of `link`; nil
    /// for a record that carries none (802.11 management, control or encrypted frames,
    /// other PPP protocols, headers cut short).
    static func networkLayer(_ raw: UnsafeRawBufferPointer, link: Int32) -> (UInt16, Int)? {
        func be16(_ at: Int) -> UInt16? { at + 2 <= raw.count ? UInt16(raw[at]) << 8 | UInt16(raw[at + 1]) : nil }
        func byVersion(_ at: Int) -> (UInt16, Int)? {
            guard at < raw.count else { return nil }
            switch raw[at] >> 4 {
            case 4: return (0x0800, at)
            case 6: return (0x86DD, at)
            default: return nil
            }
        }
        switch link {
        case 12, 14, 101: return byVersion(0)
        case 228: return (0x0800, 0)
        case 229: return (0x86DD, 0)
        case 113: return be16(14).map { ($0, 16) }
        case 276: return raw.count >= 20 ? be16(0).map { ($0, 20) } : nil
        case 0, 108:
            // A 4-byte address family (host order for 0, network order for 108):
            // AF_INET is 2 everywhere; AF_INET6 is 10, 24, 28 or 30 by system.
            guard raw.count >= 4 else { return nil }
            return byVersion(4)
        case 9:
            // PPP, with or without HDLC-like framing (FF 03); protocol 0x21 IPv4, 0x57 IPv6.
            let at = raw.count >= 2 && raw[0] == 0xFF && raw[1] == 0x03 ? 2 : 0
            guard let proto = be16(at) else { return nil }
            switch proto {
            case 0x0021: return (0x0800, at + 2)
            case 0x0057: return (0x86DD, at + 2)
            default: return nil
            }
        case 105: return ieee80211(raw, from: 0)
        case 127:
            // Radiotap: its length (little endian) at 2.
            guard raw.count >= 4 else { return nil }
            return ieee80211(raw, from: Int(raw[2]) | Int(raw[3]) << 8)
        default: return nil
        }
    }

    /// An 802.11 data frame's LLC/SNAP payload: header 24 bytes, 30 with four
    /// addresses, 2 more for QoS, 4 more for HT control; then AA AA 03 00 00 00 and the
    /// EtherType. Protected (encrypted) frames carry nothing readable.
    static func ieee80211(_ raw: UnsafeRawBufferPointer, from start: Int) -> (UInt16, Int)? {
        guard start >= 0, start + 24 <= raw.count else { return nil }
        let fc0 = raw[start], fc1 = raw[start + 1]
        let type = fc0 >> 2 & 3, subtype = fc0 >> 4
        guard type == 2, subtype & 4 == 0, fc1 & 0x40 == 0 else { return nil }  // data with a body, not protected
        var header = fc1 & 3 == 3 ? 30 : 24
        if subtype & 8 != 0 {
            header += 2
            if fc1 & 0x80 != 0 { header += 4 }
        }
        let llc = start + header
        guard llc + 8 <= raw.count, raw[llc] == 0xAA, raw[llc + 1] == 0xAA, raw[llc + 2] == 0x03 else { return nil }
        return (UInt16(raw[llc + 6]) << 8 | UInt16(raw[llc + 7]), llc + 8)
    }

    /// Takes every frame `port` receives on queue 0 until it has been idle for
    /// `idleMilliseconds` (a DPDK `net_pcap` vdev replays its file once, then goes
    /// quiet). Frames are numbered in arrival order and stamped with the arrival time.
    public init(port: some PacketPort, name: String, idleMilliseconds: Int = 500) {
        path = name
        capacity = 1 << 20
        bytes = .allocate(byteCount: capacity, alignment: 64)
        let batch = PacketBatch(capacity: 64)
        var lastArrival = DispatchTime.now().uptimeNanoseconds
        while DispatchTime.now().uptimeNanoseconds - lastArrival < UInt64(idleMilliseconds) * 1_000_000 {
            let n = port.receive(queue: 0, into: batch)
            guard n > 0 else { usleep(100); continue }
            lastArrival = DispatchTime.now().uptimeNanoseconds
            for k in 0..<batch.count {
                let frame = UnsafeRawBufferPointer(batch[k].bytes)
                append(length: frame.count, timestampNanoseconds: lastArrival, number: records.count + 1) { out in
                    if frame.count > 0 { out.copyMemory(from: frame.baseAddress!, byteCount: frame.count) }
                }
            }
            port.release(batch)
        }
    }

    deinit { bytes.deallocate() }

    /// Adds a record of `length` bytes, which `write` fills; each frame starts on a
    /// cache line.
    private func append(length: Int, timestampNanoseconds: UInt64, number: Int, write: (UnsafeMutableRawPointer) -> Void) {
        reserve(length)
        write(bytes + used)
        records.append(Record(offset: used, length: length, timestampNanoseconds: timestampNanoseconds, number: number))
        used += (length + 63) & ~63
    }

    private func reserve(_ n: Int) {
        guard used + n + 64 > capacity else { return }
        var c = capacity
        while used + n + 64 > c { c *= 2 }
        let grown = UnsafeMutableRawPointer.allocate(byteCount: c, alignment: 64)
        grown.copyMemory(from: bytes, byteCount: used)
        bytes.deallocate()
        bytes = grown
        capacity = c
    }

    /// The frame of record `i` (mutable: a steering program may edit it in place).
    @inline(__always)
    public func frame(_ i: Int) -> UnsafeMutableRawBufferPointer {
        let r = records[i]
        return UnsafeMutableRawBufferPointer(start: bytes + r.offset, count: r.length)
    }

    /// Bytes of all frames.
    public var totalBytes: Int { records.reduce(0) { $0 + $1.length } }

    /// Writes records `indices` to an Ethernet pcap (an instance's share of a trace).
    public func write(_ indices: [Int], to path: String) throws {
        let writer = try PcapWriter(path: path)
        for i in indices {
            writer.write(UnsafeRawBufferPointer(frame(i)), timestampNanoseconds: records[i].timestampNanoseconds)
        }
        writer.flush()
    }
}
