import CDPDK
import FlexIO
import FlexTestSupport
import FlexWire
import Foundation
import Testing

@Suite struct PortBasicsTests {
    /// `Packet` is filled in place by the DPDK shim: the layouts must agree.
    @Test func packetMirrorsTheShimStruct() {
        #expect(MemoryLayout<Packet>.size == MemoryLayout<cdpdk_packet>.size)
        #expect(MemoryLayout<Packet>.stride == MemoryLayout<cdpdk_packet>.stride)
        #expect(MemoryLayout<Packet>.offset(of: \.owner) == MemoryLayout<cdpdk_packet>.offset(of: \.mbuf))
        #expect(MemoryLayout<Packet>.offset(of: \.data) == MemoryLayout<cdpdk_packet>.offset(of: \.data))
        #expect(MemoryLayout<Packet>.offset(of: \.length) == MemoryLayout<cdpdk_packet>.offset(of: \.length))
        #expect(MemoryLayout<Packet>.offset(of: \.hash) == MemoryLayout<cdpdk_packet>.offset(of: \.hash))
        #expect(MemoryLayout<Packet>.offset(of: \.capacity) == MemoryLayout<cdpdk_packet>.offset(of: \.capacity))
        #expect(MemoryLayout<Packet>.offset(of: \.flags) == MemoryLayout<cdpdk_packet>.offset(of: \.flags))
        #expect(MemoryLayout<Packet>.offset(of: \.flow) == MemoryLayout<cdpdk_packet>.offset(of: \.flow))
        #expect(MemoryLayout<Packet>.offset(of: \.l3Offset) == MemoryLayout<cdpdk_packet>.offset(of: \.l3_offset))
        #expect(MemoryLayout<Packet>.offset(of: \.l4Offset) == MemoryLayout<cdpdk_packet>.offset(of: \.l4_offset))
    }

    @Test func bufferPoolIsBoundedAndReusable() {
        let pool = BufferPool(bufferCount: 8, bufferSize: 100)
        #expect(pool.bufferSize == 128)
        let a = PacketBatch(capacity: 16)
        #expect(pool.allocate(count: 6, into: a) == 6)
        #expect(pool.allocate(count: 6, into: a) == 0)  // all or none: only 2 left
        #expect(pool.allocate(count: 2, into: a) == 2)
        #expect(pool.available == 0)
        let addresses = Set((0..<8).map { a[$0].data })
        #expect(addresses.count == 8)
        #expect(addresses.allSatisfy { Int(bitPattern: $0) % 64 == 0 })
        pool.release(a)
        #expect(pool.available == 8 && a.isEmpty)
    }

    @Test func bufferPoolGivesWhatItHasWhenAskedUpToACount() {
        let pool = BufferPool(bufferCount: 8, bufferSize: 100)
        let a = PacketBatch(capacity: 16)
        #expect(pool.allocate(upTo: 6, into: a) == 6)
        #expect(pool.allocate(upTo: 6, into: a) == 2)  // only 2 left
        #expect(pool.allocate(upTo: 1, into: a) == 0)
        #expect(a.count == 8 && Set((0..<8).map { a[$0].data }).count == 8)
        let small = PacketBatch(capacity: 3)
        pool.release(a)
        #expect(pool.allocate(upTo: 6, into: small) == 3)  // the batch's room bounds it too
        #expect(pool.available == 5)
        pool.release(small)
        #expect(pool.available == 8)
    }

    @Test func memoryPortCountsAndBoundsMemory() {
        let port = MemoryPort(bufferCount: 4, bufferSize: 256)
        for i in 0..<6 { port.inject(Frames.udp([UInt8(i)])) }
        #expect(port.statistics.receiveDrops == 2)
        let batch = PacketBatch(capacity: 8)
        #expect(port.receive(queue: 0, into: batch) == 4)
        #expect(!port.inject([UInt8](repeating: 0, count: 300)))  // larger than a buffer
        #expect(port.transmit(queue: 0, batch) == 4)
        #expect(port.takeTransmitted().map { $0.last } == [0, 1, 2, 3])
        #expect(port.statistics.transmittedPackets == 4)
    }
}

@Suite struct PcapTests {
    func temporary(_ name: String) -> String { NSTemporaryDirectory() + "flex-\(getpid())-\(name)" }

    @Test func writeThenReadRoundTrips() throws {
        let path = temporary("rt.pcap")
        defer { unlink(path) }
        let frames = (0..<10).map { Frames.udp(Array("frame \($0)".utf8)) }
        do {
            let w = try PcapWriter(path: path)
            for (i, f) in frames.enumerated() { w.write(f, timestampNanoseconds: UInt64(i) * 1_500_000_123) }
        }
        let r = try PcapReader(path: path)
        #expect(r.linkType == LinkType.ethernet.rawValue)
        var read: [[UInt8]] = []
        var stamps: [UInt64] = []
        while let rec = try r.next() {
            read.append(Array(rec.bytes))
            stamps.append(rec.timestampNanoseconds)
        }
        #expect(read == frames)
        #expect(stamps[3] == 4_500_000_369)
    }

    @Test func truncatedFileNamesThePacket() throws {
        let path = temporary("cut.pcap")
        defer { unlink(path) }
        do {
            let w = try PcapWriter(path: path)
            for _ in 0..<3 { w.write(Frames.udp([UInt8](repeating: 7, count: 200))) }
        }
        truncate(path, 24 + 2 * (16 + 242) + 16 + 50)  // third record cut short
        let r = try PcapReader(path: path)
        #expect(try r.next() != nil)
        #expect(try r.next() != nil)
        do {
            _ = try r.next()
            Issue.record("a truncated record was accepted")
        } catch let e as PcapError {
            #expect(e.description.contains("packet 3"), "\(e)")
        }
    }

    /// The format's seconds are unsigned 32-bit: a capture from 2038 on (2^31 s and
    /// more) is read with its true time, not a trap (flexids crashed on one).
    @Test func timestampsFrom2038OnAreRead() throws {
        let path = temporary("y2038.pcap")
        defer { unlink(path) }
        func le32(_ v: UInt32) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v >> 16 & 0xFF), UInt8(v >> 24)] }
        func le16(_ v: UInt16) -> [UInt8] { [UInt8(v & 0xFF), UInt8(v >> 8)] }
        var file = le32(0xA1B2_C3D4) + le16(2) + le16(4) + le32(0) + le32(0) + le32(65535) + le32(1)  // microseconds, Ethernet
        let frame = [UInt8](repeating: 0xAB, count: 60)
        for seconds: UInt32 in [0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF] {
            file += le32(seconds) + le32(999_999) + le32(UInt32(frame.count)) + le32(UInt32(frame.count)) + frame
        }
        #expect(FileManager.default.createFile(atPath: path, contents: Data(file)))
        let r = try PcapReader(path: path)
        var times: [UInt64] = []
        while let record = try r.next() { times.append(record.timestampNanoseconds) }
        #expect(times == [0x7FFF_FFFF, 0x8000_0000, 0xFFFF_FFFF].map { UInt64($0) * 1_000_000_000 + 999_999_000 })
    }

    @Test func garbageAndMissingFilesAreErrors() throws {
        let path = temporary("junk.pcap")
        defer { unlink(path) }
        #expect(FileManager.default.createFile(atPath: path, contents: Data("this is not a capture file at all".utf8)))
        #expect(throws: PcapError.self) { try PcapReader(path: path) }
        #expect(throws: PcapError.self) { try PcapReader(path: temporary("does-not-exist.pcap")) }
    }

    @Test func pcapPortReplaysAndRecords() throws {
        let input = temporary("in.pcap"), output = temporary("out.pcap")
        defer { unlink(input); unlink(output) }
        let frames = (0..<40).map { Frames.udp(Array("p\($0)".utf8)) }
        do { let w = try PcapWriter(path: input); frames.forEach { w.write($0) } }
        let port = try PcapPort(input: input, output: output)
        let batch = PacketBatch(capacity: 32)
        var got: [[UInt8]] = []
        while !port.finished || !batch.isEmpty {
            _ = port.receive(queue: 0, into: batch)
            if batch.isEmpty { break }
            got += (0..<batch.count).map { batch[$0].byteArray }
            _ = port.transmit(queue: 0, batch)
        }
        port.close()
        #expect(got == frames)
        #expect(port.error == nil)
        let r = try PcapReader(path: output)
        var n = 0
        while try r.next() != nil { n += 1 }
        #expect(n == 40)
    }
}
