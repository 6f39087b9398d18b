@testable import FlexKVS
import FlexNIC
import Foundation
import FlexTestSupport
import Testing

/// A memcached binary SET (or SETQ) in one UDP datagram: frame header, request header,
/// flags + expiry extras, key, value.
func binarySetDatagram(key: String, value: [UInt8], opcode: UInt8 = 0x01, opaque: UInt32 = 7, cas: UInt64 = 0,
                       flags: UInt32 = 0, requestID: UInt16 = 1, bodyLengthSkew: Int = 0) -> [UInt8] {
    let k = Array(key.utf8)
    func be32(_ v: UInt32) -> [UInt8] { [UInt8(v >> 24), UInt8(v >> 16 & 255), UInt8(v >> 8 & 255), UInt8(v & 255)] }
    var b: [UInt8] = [UInt8(requestID >> 8), UInt8(requestID & 255), 0, 0, 0, 1, 0, 0]
    b += [0x80, opcode, 0, UInt8(k.count), 8, 0, 0, 0] + be32(UInt32(8 + k.count + value.count + bodyLengthSkew)) + be32(opaque)
    b += be32(UInt32(cas >> 32)) + be32(UInt32(cas & 0xFFFF_FFFF))
    b += be32(flags) + be32(0) + k + value
    return b
}

/// The core's side of placed SETs (`PlacementLog`) without a network: the test plays
/// the pipeline by appending records into the registered segments.
@Suite struct PlacementLogTests {
    static func store() -> KVStore {
        var c = KVStore.Configuration()
        c.memoryLimit = 1 << 20
        c.maxItemSize = 1024
        c.segmentSize = 4096
        c.partitions = 1
        return KVStore(c)
    }

    /// Appends a datagram's record as the pipeline would (from the frame header's last
    /// 4 bytes on).
    static func place(_ datagram: [UInt8], _ log: PlacementLog) -> LogSegments.Append {
        datagram.withUnsafeBytes {
            log.segments.append($0.baseAddress! + MemcachedUDPFrame.headerLength - PlacementLog.recordPrefix,
                                count: $0.count - MemcachedUDPFrame.headerLength + PlacementLog.recordPrefix)
        }
    }

    func keyHash(_ key: String) -> UInt32 { Array(key.utf8).withUnsafeBytes { KVStore.hash($0) } }

    static func value(_ i: Int) -> [UInt8] { Array(repeating: UInt8(0x41 + i % 26), count: 100 + i % 7) }

    @Test func placedSetsBecomeItemsAndLostRecordsDie() throws {
        let store = Self.store()
        let p = store.partitions[0]
        let log = try PlacementLog(partition: p, count: 2)
        var records: [UnsafeMutableRawPointer] = []
        var notice: (segment: Int, used: Int)?
        var i = 0
        // Fill slot 0 and start slot 1.
        while notice == nil {
            guard case let .stored(_, data, filled) = Self.place(binarySetDatagram(key: "k\(i)", value: Self.value(i)), log) else {
                Issue.record("append refused")
                return
            }
            records.append(data)
            notice = filled
            i += 1
        }
        let filled = try #require(notice)
        // The descriptors of records 0 and 1 were "dropped"; the rest of segment 0's arrive.
        for (n, r) in records.enumerated().dropFirst(2).dropLast() {
            let placed = try #require(log.accept(r))
            let s = try #require(log.storeSet(placed, hash: keyHash("k\(n)")))
            #expect(s.cas != 0 && s.opcode == 0x01 && s.opaque == 7)
        }
        #expect(log.lost == 2)
        let oldBase = log.segments.segment(filled.segment)
        log.filled(slot: filled.segment, used: filled.used)
        #expect(log.adopted == 1 && log.segments.isArmed(filled.segment) && log.segments.segment(filled.segment) != oldBase)
        // The adopted segment walks as items: 2 dead, the rest live with their values.
        let adopted = store.pool.segment(containing: oldBase)
        #expect(p.probation.full == [adopted])
        var live = 0, dead = 0
        p.probation.forEachRecord(in: adopted) { _, it in if it.isLive { live += 1 } else { dead += 1 } }
        #expect(dead == 2 && live == records.count - 3)
        #expect(store.get("k0") == nil && store.get("k1") == nil)
        for n in 2..<(records.count - 1) { #expect(store.get("k\(n)") == String(decoding: Self.value(n), as: UTF8.self)) }
        #expect(store.total(.currItems) == Int64(records.count - 3))
        // Evicting the adopted segment: its items, all read above, move to main as far as
        // the promotion share allows; the rest are dropped, and nothing else breaks.
        #expect(p.evictOne())
        #expect(p.probation.full.isEmpty)
        let promoted = store.total(.secondChances)
        #expect(promoted > 0 && promoted < Int64(records.count - 3) && store.total(.currItems) == promoted)
        let readable = (2..<(records.count - 1)).filter { store.get("k\($0)") == String(decoding: Self.value($0), as: UTF8.self) }
        #expect(readable.count == Int(promoted))
    }

    @Test func overwrittenPlacedItemsCompact() throws {
        let store = Self.store()
        let p = store.partitions[0]
        let log = try PlacementLog(partition: p, count: 2)
        var filledOnce: (segment: Int, used: Int)?
        var keys = 0
        // Place and store until slot 0 fills; then overwrite every other key through the
        // ordinary path, so more than half of the adopted segment is dead.
        while filledOnce == nil {
            let d = binarySetDatagram(key: "c\(keys)", value: Self.value(keys))
            guard case let .stored(_, data, filled) = Self.place(d, log) else { Issue.record("append refused"); return }
            filledOnce = filled
            if let filled { log.filled(slot: filled.segment, used: filled.used) }
            let placed = try #require(log.accept(data))
            _ = try #require(log.storeSet(placed, hash: keyHash("c\(keys)")))
            keys += 1
        }
        for n in 0..<keys where n % 2 == 0 || n < keys / 2 { store.set("c\(n)", "new\(n)") }
        #expect(p.compactOne())
        for n in 0..<keys {
            let expected = n % 2 == 0 || n < keys / 2 ? "new\(n)" : String(decoding: Self.value(n), as: UTF8.self)
            #expect(store.get("c\(n)") == expected)
        }
        #expect(p.stats[.compactedItems] > 0)
    }

    /// Too little memory, no UDP, or `-B ascii` (under which a binary request is text,
    /// but dma's pipeline places binary SETs and parses binary GETs); and, under any
    /// steering, more than 64 threads (the workers' masks are 64 bits).
    @Test func aConfigurationDmaCannotServeIsAClearError() throws {
        var c = KVServerConfig.dma(threads: 2)
        c.store.memoryLimit = 4 << 20
        #expect(throws: KVSServer.ConfigurationError.self) { try KVSServer(c) }
        c.store.memoryLimit = 64 << 20
        c.udpPort = nil
        #expect(throws: KVSServer.ConfigurationError.self) { try KVSServer(c) }
        c.udpPort = 0
        c.binding = .ascii
        #expect(throws: KVSServer.ConfigurationError.self) { try KVSServer(c) }
        c.binding = .auto
        c.threads = 65
        #expect(throws: KVSServer.ConfigurationError.self) { try KVSServer(c) }
        c.threads = 2
        try KVSServer(c).stop()
    }
}

enum KVServerConfig {
    static func dma(threads: Int) -> KVSServer.Configuration {
        var c = KVSServer.Configuration()
        c.tcpPort = 0
        c.udpPort = 0
        c.threads = threads
        c.steering = .dma
        return c
    }
}

/// flexkvs with `--steering dma` over kernel UDP: binary SETs are placed by the
/// pipeline into the owning partition's segments and become items there.
@Suite(.serialized, .tags(.integration)) struct PlacedSetServerIntegrationTests {
    /// The first 24 bytes of a binary reply after the frame header: (opcode, status, opaque, cas).
    static func header(_ d: [UInt8]) -> (UInt8, Int, UInt32, UInt64)? {
        guard d.count >= 8 + 24, d[8] == 0x81 else { return nil }
        let b = Array(d[8...])
        let opaque = b[12..<16].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        let cas = b[16..<24].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        return (b[1], Int(b[6]) << 8 | Int(b[7]), opaque, cas)
    }

    static func binaryGet(_ key: String, requestID: UInt16) -> [UInt8] {
        let k = Array(key.utf8)
        return [UInt8(requestID >> 8), UInt8(requestID & 255), 0, 0, 0, 1, 0, 0]
            + [0x80, 0x00, 0, UInt8(k.count), 0, 0, 0, 0, 0, 0, 0, UInt8(k.count)] + [UInt8](repeating: 0, count: 12) + k
    }

    @Test func placedSetsAreServedEvictedAndCounted() throws {
        // 4 KiB segments, 1 MiB: 128 segments per partition, so 4,000 SETs of about
        // 340 bytes fill and adopt many placing segments and force evictions.
        let t = try TestServer(threads: 2, steering: .dma, memoryMB: 1, maxItem: 1024, segmentSize: 4096)
        let u = try Client(udp: t.udpPort)
        func value(_ i: Int) -> [UInt8] { Array("value-\(i)-".utf8) + [UInt8](repeating: UInt8(0x61 + i % 26), count: 300) }
        var acked = 0
        for i in 0..<4000 {
            let id = UInt16(truncatingIfNeeded: i)
            u.send(binarySetDatagram(key: "placed:\(i)", value: value(i), opaque: UInt32(i), flags: 5, requestID: id))
            guard let r = u.receiveDatagram(), r[0] == UInt8(id >> 8), r[1] == UInt8(id & 255),
                  let (op, status, opaque, cas) = Self.header(r) else { continue }
            if op == 0x01 && status == 0 && opaque == UInt32(i) && cas != 0 { acked += 1 }
        }
        #expect(acked == 4000)
        // The newest items are all there, with value and flags; the oldest were evicted.
        var found = 0
        for i in 3800..<4000 {
            u.send(Self.binaryGet("placed:\(i)", requestID: UInt16(i)))
            guard let r = u.receiveDatagram(), let (_, status, _, _) = Self.header(r), status == 0 else { continue }
            if Array(r[(8 + 24)..<(8 + 28)]) == [0, 0, 0, 5] && Array(r[(8 + 28)...]) == value(i) { found += 1 }
        }
        #expect(found == 200)
        let tcp = try Client(tcp: t.tcpPort)
        tcp.send("get placed:3999\r\n")
        #expect(tcp.receive(until: "END\r\n") == "VALUE placed:3999 5 \(value(3999).count)\r\n" + String(decoding: value(3999), as: UTF8.self) + "\r\nEND\r\n")
        // SETQ: stored without a reply; a CAS SET and a SET whose lengths disagree with
        // the datagram take the ordinary path and get its errors.
        u.send(binarySetDatagram(key: "quiet", value: Array("q".utf8), opcode: 0x11, requestID: 9000))
        u.send(binarySetDatagram(key: "quiet", value: Array("x".utf8), cas: 12345, requestID: 9001))
        #expect(Self.header(u.receiveDatagram() ?? []).map { $0.1 } == 2)  // exists: CAS mismatch
        u.send(Self.binaryGet("quiet", requestID: 9002))
        #expect(u.receiveDatagram().map { Array($0.suffix(1)) } == Array("q".utf8))
        u.send(binarySetDatagram(key: "short", value: Array("abc".utf8), requestID: 9003, bodyLengthSkew: -2))
        u.send(Self.binaryGet("quiet", requestID: 9004))
        var replies: [[UInt8]] = []
        while replies.count < 2, let r = u.receiveDatagram() { replies.append(r) }
        #expect(replies.contains { $0[1] == UInt8(9004 & 255) && $0.suffix(1) == Array("q".utf8)[...] })
        tcp.send("stats steering\r\nstats\r\n")
        let lines = tcp.receive(until: "END\r\nEND\r\n").split(separator: "\r\n")
        func total(_ name: String) -> Int {
            lines.filter { $0.hasSuffix(name) || $0.contains(name + " ") }.compactMap { Int($0.split(separator: " ").last!) }.reduce(0, +)
        }
        #expect(total("placed_sets") == 4001)  // the SETQ too; not the CAS or the short one
        #expect(total("placed_segments_adopted") > 20)
        #expect(total("placed_records_lost") == 0)
        // The binary GETs above, each alone in its datagram, took the parsed GET path.
        #expect(total("parsed_gets") >= 202)
        #expect(total("STAT evictions") > 0)
    }
}
