import FlexIO
import Foundation

/// A packet trace held in memory as Ethernet frames, numbered from 1 in file order:
/// what a replay steers and instances inspect. Linux cooked captures (v1 and v2) and raw
/// IP captures are given a synthetic Ethernet header as they load, so everything after
/// the loader sees one link type; VLAN tags stay in place.
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
    /// Records skipped: longer than 65535 bytes, or shorter than a cooked capture's header.
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
        let header: Int
        switch link {
        case 1: header = -1            // Ethernet: as is
        case 12, 14, 101: header = 0   // raw IP
        case 113: header = 16          // Linux cooked v1: protocol at 14
        case 276: header = 20          // Linux cooked v2: protocol at 0
        default:
            throw PcapError(description: "\(path): link type \(link) is not supported (Ethernet, Linux cooked capture and raw IP are)")
        }
        while records.count < limit {
            let record: PcapReader.Record?
            do { record = try reader.next() } catch { self.error = "\(error)"; break }
            guard let record else { break }
            let raw = record.bytes
            var etherType: UInt16 = 0x0800
            var l3 = raw
            if header >= 0 {
                guard raw.count >= header else { skipped += 1; continue }
                l3 = UnsafeRawBufferPointer(rebasing: raw[header...])
                if header == 0 {
                    etherType = raw.first.map { $0 >> 4 == 6 ? 0x86DD : 0x0800 } ?? 0x0800
                } else {
                    let at = link == 113 ? 14 : 0
                    etherType = UInt16(raw[at]) << 8 | UInt16(raw[at + 1])
                }
            }
            let length = header >= 0 ? l3.count + 14 : raw.count
            guard length <= Self.maximumFrame else { skipped += 1; continue }
            append(length: length, timestampNanoseconds: record.timestampNanoseconds, number: reader.packetNumber) { out in
                if header >= 0 {
                    out.initializeMemory(as: UInt8.self, repeating: 0, count: 12)
                    out.storeBytes(of: etherType.bigEndian, toByteOffset: 12, as: UInt16.self)
                    if l3.count > 0 { (out + 14).copyMemory(from: l3.baseAddress!, byteCount: l3.count) }
                } else if raw.count > 0 {
                    out.copyMemory(from: raw.baseAddress!, byteCount: raw.count)
                }
            }
        }
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
