import FlexKVS
import FlexNIC
import Foundation
import Synchronization
import FlexTestSupport
import Testing

/// A key's shard is its redirection-table entry; moving a shard moves its requests
/// and its items, and the rebalancer moves shards only when that evens the load out.
@Suite struct ShardBalancerTests {
    static let shards = RedirectionTable.defaultEntries

    /// Cumulative counts after one more round in which shard s served `perRound(s)`.
    static func advance(_ counts: inout [UInt64], _ perRound: (Int) -> UInt64) {
        for s in counts.indices { counts[s] += perRound(s) }
    }

    static func load(_ perRound: (Int) -> UInt64, owners: [Int], workers: Int) -> [UInt64] {
        var l = [UInt64](repeating: 0, count: workers)
        for s in owners.indices { l[owners[s]] += perRound(s) }
        return l
    }

    /// Twice as many requests for worker 0's shards as for worker 1's: moves go from
    /// 0 to 1, each lowers the busier worker's load, and the rounds end balanced
    /// within the stop bound, after which nothing more moves.
    @Test func movesEvenOutASkewedLoad() {
        var b = ShardBalancer(shards: Self.shards, workers: 2)
        var owners = (0..<Self.shards).map { $0 % 2 }
        let perRound: (Int) -> UInt64 = { $0 % 2 == 0 ? 200 : 100 }
        var counts = [UInt64](repeating: 0, count: Self.shards)
        var moves = 0
        for _ in 0..<20 {
            Self.advance(&counts, perRound)
            let before = Self.load(perRound, owners: owners, workers: 2)
            let planned = b.plan(counts: counts, owners: owners)
            for m in planned {
                #expect(owners[m.shard] != m.to)
                owners[m.shard] = m.to
            }
            let after = Self.load(perRound, owners: owners, workers: 2)
            if !planned.isEmpty {
                #expect(after.max()! < before.max()!, "a round's moves must lower the busiest worker's load")
                #expect(planned.allSatisfy { $0.to == before.firstIndex(of: before.min()!)! })
            }
            moves += planned.count
        }
        let final = Self.load(perRound, owners: owners, workers: 2)
        let mean = Double(final.reduce(0, +)) / 2
        #expect(moves > 0)
        #expect(Double(final.max()!) / mean < b.policy.stop, "load per worker after balancing: \(final)")
        // Balanced: further rounds move nothing.
        Self.advance(&counts, perRound)
        #expect(b.plan(counts: counts, owners: owners).isEmpty)
    }

    /// A skew below the start bound moves nothing (hysteresis); one above it does.
    @Test func smallSkewsDoNotMove() {
        var b = ShardBalancer(shards: Self.shards, workers: 2)
        let owners = (0..<Self.shards).map { $0 % 2 }
        var counts = [UInt64](repeating: 0, count: Self.shards)
        // Loads 107 : 93 per shard: the busier worker at 1.07x the mean.
        for _ in 0..<5 {
            Self.advance(&counts) { $0 % 2 == 0 ? 107 : 93 }
            #expect(b.plan(counts: counts, owners: owners).isEmpty)
        }
        Self.advance(&counts) { $0 % 2 == 0 ? 150 : 50 }
        #expect(!b.plan(counts: counts, owners: owners).isEmpty)
    }

    /// One shard hotter than everything else together: moving it would only swap the
    /// workers' roles, so it stays, and nothing else is shuffled around it in vain.
    @Test func aShardHotterThanAWorkersShareStays() {
        var b = ShardBalancer(shards: Self.shards, workers: 2)
        let owners = (0..<Self.shards).map { $0 % 2 }
        var counts = [UInt64](repeating: 0, count: Self.shards)
        for _ in 0..<5 {
            Self.advance(&counts) { $0 == 0 ? 100_000 : 10 }
            let moves = b.plan(counts: counts, owners: owners)
            #expect(!moves.contains { $0.shard == 0 })
            // Worker 1's shards moving to 0 would make it worse; 0's small shards
            // may move to 1 (each lowers the gap a little) but never shard 0.
            #expect(moves.allSatisfy { $0.to == 1 })
        }
    }

    /// Moves that do not lower the imbalance (the load is the workers', not the
    /// shards': worker 0 serves twice worker 1's requests whatever shards it has) make
    /// the guard pause.
    @Test func movesThatDoNotHelpPause() {
        var b = ShardBalancer(shards: Self.shards, workers: 2)
        var owners = (0..<Self.shards).map { $0 % 2 }
        var counts = [UInt64](repeating: 0, count: Self.shards)
        var rounds = 0, movingRounds = 0
        while b.pausedRounds == 0 && rounds < 50 {
            rounds += 1
            let current = owners
            let n0 = UInt64(current.filter { $0 == 0 }.count)
            Self.advance(&counts) { current[$0] == 0 ? 64_000 / n0 : 32_000 / (128 - n0) }
            let moves = b.plan(counts: counts, owners: owners)
            if !moves.isEmpty { movingRounds += 1 }
            for m in moves { owners[m.shard] = m.to }
        }
        #expect(b.pausedRounds > 0, "the guard never paused in \(rounds) rounds")
        #expect(movingRounds <= b.policy.patience + 1)
        // While paused, nothing moves.
        for _ in 0..<5 {
            let current = owners
            let n0 = UInt64(current.filter { $0 == 0 }.count)
            Self.advance(&counts) { current[$0] == 0 ? 64_000 / n0 : 32_000 / (128 - n0) }
            #expect(b.plan(counts: counts, owners: owners).isEmpty)
        }
    }
}

@Suite struct ShardMoveTests {
    /// Moving a shard re-points its table entry and carries its items across with
    /// their values, flags, expiry and CAS; the old partition keeps none of them.
    @Test func aMovedShardKeepsItsItems() throws {
        let store = makeStore(partitions: 2)
        let keys = (0..<400).map { "key-\($0)" }
        for (i, k) in keys.enumerated() { store.set(k, "value-\(i)", flags: UInt32(i)) }
        let cas = keys.map { store.cas($0)! }
        let shard = Array(keys[0].utf8).withUnsafeBytes { store.shards.entry(for: KVStore.hash($0)) }
        let from = store.shards[shard]
        let inShard = keys.filter { Array($0.utf8).withUnsafeBytes { store.shards.entry(for: KVStore.hash($0)) } == shard }
        #expect(store.moveShard(shard, to: 1 - from))
        #expect(store.shards[shard] == 1 - from)
        #expect(store.itemsMoved.load(ordering: .relaxed) == UInt64(inShard.count))
        for (i, k) in keys.enumerated() {
            #expect(store.get(k) == "value-\(i)")
            #expect(store.cas(k) == cas[i])
            store.withKey(k) { key, h, p in #expect(p.get(key, hash: h)?.flags == UInt32(i)) }
        }
        let inOld = Set(store.partitions[from].keys().map { String(decoding: $0, as: UTF8.self) })
        #expect(inOld.isDisjoint(with: inShard))
        #expect(store.total(.currItems) == Int64(keys.count))
        #expect(store.total(.totalItems) == Int64(keys.count))
        #expect(!store.moveShard(shard, to: 1 - from), "a shard already there does not move")
    }

    /// Two threads run requests through `withPartition` while a third moves shards
    /// back and forth as fast as it can: every write is read back by its writer (no
    /// stale read), every increment of shared counters counts once, and no item is
    /// lost.
    @Test func movesUnderTrafficLoseNothingAndServeNothingStale() throws {
        let store = makeStore(partitions: 2)
        let counters = (0..<32).map { "counter-\($0)" }
        for c in counters { store.set(c, "0") }
        let stop = Atomic<Bool>(false)
        let stale = Atomic<Int>(0), missing = Atomic<Int>(0)
        let rounds = 3_000
        let group = DispatchGroup()
        for t in 0..<2 {
            group.enter()
            Thread {
                defer { group.leave() }
                for v in 1...rounds {
                    for k in 0..<8 {
                        let key = Array("t\(t)-key-\(k)".utf8), value = Array("v\(v)".utf8)
                        key.withUnsafeBytes { kb in
                            let h = KVStore.hash(kb)
                            _ = value.withUnsafeBytes { vb in
                                store.withPartition(h) { $0.store(.set, key: kb, hash: h, flags: 0, expiry: 0, value: vb) }
                            }
                            let read = store.withPartition(h) { p in p.get(kb, hash: h).map { Array($0.value) } }
                            if read == nil { missing.wrappingAdd(1, ordering: .relaxed) } else if read != value { stale.wrappingAdd(1, ordering: .relaxed) }
                        }
                    }
                    let c = Array(counters[v % counters.count].utf8)
                    c.withUnsafeBytes { kb in
                        let h = KVStore.hash(kb)
                        _ = store.withPartition(h) { $0.delta(kb, hash: h, increment: true, by: 1) }
                    }
                }
            }.start()
        }
        let moverGroup = DispatchGroup()
        moverGroup.enter()
        Thread {
            var r = SystemRandomNumberGenerator()
            while !stop.load(ordering: .relaxed) {
                let s = Int.random(in: 0..<store.shards.count, using: &r)
                store.moveShard(s, to: 1 - store.shards[s])
            }
            moverGroup.leave()
        }.start()
        group.wait()
        stop.store(true, ordering: .relaxed)
        moverGroup.wait()
        #expect(store.shardMoves.load(ordering: .relaxed) > 100, "too few moves raced the traffic")
        #expect(stale.load(ordering: .relaxed) == 0)
        #expect(missing.load(ordering: .relaxed) == 0)
        let total = counters.compactMap { store.get($0).flatMap { Int($0.trimmingCharacters(in: .whitespaces)) } }.reduce(0, +)
        #expect(total == 2 * rounds)
        for t in 0..<2 { for k in 0..<8 { #expect(store.get("t\(t)-key-\(k)") == "v\(rounds)") } }
        #expect(store.total(.currItems) == Int64(counters.count + 16))
    }
}

@Suite(.serialized, .tags(.integration)) struct RebalancingServerIntegrationTests {
    /// flexkvs with two workers under key steering, and clients (two over UDP, one
    /// over TCP) whose keys all lie in worker 0's shards: the rebalancer moves shards
    /// to worker 1 while they run, and every request gets its reply, every GET the
    /// value its client last stored.
    @Test func shardsMoveUnderTrafficWithNothingLostOrStale() throws {
        let t = try TestServer(threads: 2, steering: .key, rebalanceInterval: 0.3)
        let server = t.server
        let store = server.context.store
        @Sendable func keys(_ prefix: String) -> [String] {
            (0..<2000).lazy.map { "\(prefix)-\($0)" }.filter { k in
                Array(k.utf8).withUnsafeBytes { store.shards.queue(for: KVStore.hash($0)) == 0 }
            }.prefix(64).map { $0 }
        }
        let lost = Atomic<Int>(0), stale = Atomic<Int>(0), served = Atomic<Int>(0)
        let deadline = Date().addingTimeInterval(3)
        let group = DispatchGroup()
        for c in 0..<2 {
            group.enter()
            Thread {
                defer { group.leave() }
                guard let u = try? Client(udp: server.udpPort!) else { lost.wrappingAdd(1, ordering: .relaxed); return }
                let mine = keys("udp\(c)")
                var id: UInt16 = 0, v = 0
                while Date() < deadline {
                    v += 1
                    let key = mine[v % mine.count]
                    id &+= 1
                    let header: [UInt8] = [UInt8(id >> 8), UInt8(id & 255), 0, 0, 0, 1, 0, 0]
                    u.send(header + Array("set \(key) 0 0 \(String(v).utf8.count)\r\n\(v)\r\n".utf8))
                    guard u.receiveDatagram() == header + Array("STORED\r\n".utf8) else { lost.wrappingAdd(1, ordering: .relaxed); return }
                    id &+= 1
                    let h2: [UInt8] = [UInt8(id >> 8), UInt8(id & 255), 0, 0, 0, 1, 0, 0]
                    u.send(h2 + Array("get \(key)\r\n".utf8))
                    guard let r = u.receiveDatagram(), r.count > 8, Array(r[..<8]) == h2 else { lost.wrappingAdd(1, ordering: .relaxed); return }
                    if String(decoding: r[8...], as: UTF8.self) != "VALUE \(key) 0 \(String(v).utf8.count)\r\n\(v)\r\nEND\r\n" {
                        stale.wrappingAdd(1, ordering: .relaxed)
                    }
                    served.wrappingAdd(2, ordering: .relaxed)
                }
            }.start()
        }
        group.enter()
        Thread {
            defer { group.leave() }
            guard let c = try? Client(tcp: server.tcp.port) else { lost.wrappingAdd(1, ordering: .relaxed); return }
            let mine = keys("tcp")
            var v = 0
            while Date() < deadline {
                v += 1
                let key = mine[v % mine.count]
                c.send("set \(key) 0 0 \(String(v).utf8.count)\r\n\(v)\r\nget \(key)\r\n")
                let reply = c.receive(until: "END\r\n")
                guard reply.hasSuffix("END\r\n") else { lost.wrappingAdd(1, ordering: .relaxed); return }
                if reply != "STORED\r\nVALUE \(key) 0 \(String(v).utf8.count)\r\n\(v)\r\nEND\r\n" { stale.wrappingAdd(1, ordering: .relaxed) }
                served.wrappingAdd(2, ordering: .relaxed)
            }
        }.start()
        group.wait()
        #expect(lost.load(ordering: .relaxed) == 0)
        #expect(stale.load(ordering: .relaxed) == 0)
        #expect(served.load(ordering: .relaxed) > 2_000)
        #expect(store.shardMoves.load(ordering: .relaxed) > 0, "the rebalancer moved nothing")
        // Shards the clients use now live on worker 1 too.
        let busyOnOne = (0..<store.shards.count).filter { store.shards[$0] == 1 && store.requests(ofShard: $0) > 0 }
        #expect(!busyOnOne.isEmpty)
        let tcp = try Client(tcp: server.tcp.port)
        tcp.send("stats steering\r\n")
        let stats = tcp.receive(until: "END\r\n")
        #expect(stats.contains("STAT rebalancing on\r\n"))
        #expect(stats.contains("STAT worker:1:shards "))
        #expect(!stats.contains("STAT shard_moves 0\r\n"))
    }
}
