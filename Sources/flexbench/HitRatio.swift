import ArgumentParser
import FlexWire
import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// `flexbench hitratio`: how well each server keeps what is asked for when it cannot
/// keep everything. memcached and flexkvs run with the same -m, one after the other,
/// under the same seeded cache-aside workload (get; on a miss, set), and the hit ratios
/// are compared.
struct HitRatio: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "hitratio",
        abstract: "Compare memcached's and flexkvs's hit ratios under a cache-aside workload larger than memory.",
        discussion: """
            Keys are drawn from a Zipf distribution over enough keys that their values \
            add up to --working-set times -m; each key's value size is fixed, log-uniform \
            between --min-value and --max-value. A client gets keys in pipelined batches \
            and sets every key it missed (noreply), as a cache-aside application does. \
            The first --warmup requests fill the cache and are not counted; the hit \
            ratio is measured over the next --requests. Both servers get the same key \
            sequence (same --seed), each started fresh with -t 1.
            """)

    @Option(help: "Item memory for both servers, MB (-m).") var memory = 64
    @Option(help: "Working set, as a multiple of -m.") var workingSet = 4.0
    @Option(help: "Zipf exponents to run, comma-separated.") var zipf = "0.9,1.1"
    @Option(help: "Smallest value, bytes.") var minValue = 100
    @Option(help: "Largest value, bytes.") var maxValue = 10_240
    @Option(help: "Requests before measuring (not counted).") var warmup = 1_000_000
    @Option(help: "Requests measured.") var requests = 2_000_000
    @Option(help: "Requests in flight per batch.") var batch = 64
    @Option(help: "Seed of the key sequence.") var seed: UInt64 = 1
    @Option(help: "memcached binary.") var memcached = "/usr/bin/memcached"
    @Option(help: "flexkvs binary (default: beside this flexbench).") var flexkvs: String?
    @Option(help: "memcached's port.") var memcachedPort: UInt16 = 21211
    @Option(help: "flexkvs's port.") var flexkvsPort: UInt16 = 21311

    func validate() throws {
        guard memory >= 8, workingSet > 0, minValue >= 1, maxValue >= minValue, batch >= 1, requests >= 1 else {
            throw ValidationError("need -m >= 8, a positive working set, 1 <= --min-value <= --max-value, --batch >= 1")
        }
    }

    func run() throws {
        let flexPath = try ServerProcess.flexkvsPath(flexkvs, memcached: memcached)
        let sizes = ValueSizes(min: minValue, max: maxValue)
        let keys = Int(workingSet * Double(memory << 20) / sizes.mean)
        print(String(format: "hitratio: -m %d MB, %d keys (working set %.1fx memory), values %d-%d B log-uniform (mean %.0f B), "
                     + "warmup %d, measured %d requests, batches of %d, seed %d",
                     memory, keys, workingSet, minValue, maxValue, sizes.mean, warmup, requests, batch, seed))
        for s in zipf.split(separator: ",") {
            guard let exponent = Double(s), exponent > 0 else { throw ValidationError("--zipf: \(s)") }
            let workload = KVSWorkload(keys: keys, keySize: 16, valueSize: maxValue, distribution: .zipf, zipf: exponent, getRatio: 1)
            var ratios: [String: Double] = [:]
            for (name, path, port) in [("memcached", memcached, memcachedPort), ("flexkvs", flexPath, flexkvsPort)] {
                let arguments = ["-t", "1", "-p", "\(port)", "-U", "0", "-l", "127.0.0.1", "-m", "\(memory)"]
                    + (name == "memcached" && getuid() == 0 ? ["-u", "root"] : [])
                let server = try ServerProcess(path: path, arguments: arguments, server: (.loopback, port))
                defer { server.stop() }
                let client = try CacheAsideClient(port: port, workload: workload, sizes: sizes, batch: batch)
                var rng = Xorshift(seed: seed)
                _ = try client.run(requests: warmup, rng: &rng)
                let t0 = Date()
                let hits = try client.run(requests: requests, rng: &rng)
                let ratio = Double(hits) / Double(requests)
                ratios[name] = ratio
                let held = (try? client.stats(["curr_items", "bytes", "evictions"])) ?? "?"
                print(String(format: "  zipf %.2f %@: hit ratio %.4f (%d of %d; %.1f s); %@", exponent, name, ratio, hits, requests,
                             Date().timeIntervalSince(t0), held))
                fflush(stdout)
            }
            print(String(format: "RESULT zipf %.2f: memcached %.4f, flexkvs %.4f, flexkvs/memcached %.3f, miss ratio memcached/flexkvs %.3f",
                         exponent, ratios["memcached"]!, ratios["flexkvs"]!, ratios["flexkvs"]! / ratios["memcached"]!,
                         (1 - ratios["memcached"]!) / max(1e-9, 1 - ratios["flexkvs"]!)))
        }
    }
}

/// Each key's value size: log-uniform between `min` and `max`, fixed per key.
struct ValueSizes {
    let min: Int
    let max: Int

    var mean: Double {
        min == max ? Double(min) : Double(max - min) / Foundation.log(Double(max) / Double(min))
    }

    func size(ofKey i: Int) -> Int {
        var mix = SplitMix64(seed: UInt64(i) &+ 0x5851_F42D_4C95_7F2D)
        let u = Double(mix.next() >> 11) / Double(1 << 53)
        return Int(Double(min) * Foundation.pow(Double(max) / Double(min), u))
    }
}

/// One blocking TCP connection that gets keys in pipelined batches and sets the ones
/// it missed.
final class CacheAsideClient {
    let fd: Int32
    let workload: KVSWorkload
    let sizes: ValueSizes
    let batch: Int
    var input: [UInt8] = []
    var consumed = 0

    init(port: UInt16, workload: KVSWorkload, sizes: ValueSizes, batch: Int) throws {
        fd = try KVSLoad.connect((.loopback, port), udp: false, blocking: true)
        self.workload = workload
        self.sizes = sizes
        self.batch = batch
    }

    deinit { close(fd) }

    /// Runs `requests` gets (and the sets their misses call for); returns the hits.
    func run(requests: Int, rng: inout Xorshift) throws -> Int {
        var hits = 0
        var done = 0
        var keys: [Int] = []
        var out: [UInt8] = []
        while done < requests {
            let n = Swift.min(batch, requests - done)
            keys.removeAll(keepingCapacity: true)
            out.removeAll(keepingCapacity: true)
            for _ in 0..<n {
                let k = workload.sampleKey(&rng)
                keys.append(k)
                out += Array("get ".utf8) + workload.key(k) + [0x0D, 0x0A]
            }
            try KVSLoad.sendAll(fd, out)
            out.removeAll(keepingCapacity: true)
            for k in keys {
                if try readReply() {
                    hits += 1
                } else {
                    let size = sizes.size(ofKey: k)
                    out += Array("set ".utf8) + workload.key(k) + Array(" 0 0 \(size) noreply\r\n".utf8)
                    out += workload.value[0..<size] + [0x0D, 0x0A]
                }
            }
            if !out.isEmpty { try KVSLoad.sendAll(fd, out) }
            done += n
        }
        return hits
    }

    /// The named general stats, as "name value" pairs.
    func stats(_ names: [String]) throws -> String {
        try KVSLoad.sendAll(fd, Array("stats\r\n".utf8))
        var found: [String] = []
        while true {
            let line = String(decoding: try readLine(), as: UTF8.self)
            if line == "END" { break }
            let parts = line.split(separator: " ")
            if parts.count == 3, names.contains(String(parts[1])) { found.append("\(parts[1]) \(parts[2])") }
        }
        return found.joined(separator: ", ")
    }

    /// Reads one get reply: true for a hit (VALUE ... END), false for a miss (END).
    func readReply() throws -> Bool {
        let line = try readLine()
        if line == Array("END".utf8) { return false }
        guard line.starts(with: Array("VALUE ".utf8)), let length = String(decoding: line, as: UTF8.self).split(separator: " ").last.flatMap({ Int($0) }) else {
            throw LoadError("unexpected reply: \(String(decoding: line.prefix(80), as: UTF8.self))")
        }
        try need(length + 2)
        consumed += length + 2
        guard try readLine() == Array("END".utf8) else { throw LoadError("reply without END") }
        return true
    }

    func readLine() throws -> [UInt8] {
        while true {
            if let nl = input[consumed...].firstIndex(of: 0x0A) {
                let line = Array(input[consumed..<(nl > consumed && input[nl - 1] == 0x0D ? nl - 1 : nl)])
                consumed = nl + 1
                return line
            }
            try fill()
        }
    }

    func need(_ count: Int) throws { while input.count - consumed < count { try fill() } }

    func fill() throws {
        if consumed > 0 && consumed == input.count {
            input.removeAll(keepingCapacity: true)
            consumed = 0
        } else if consumed > 1 << 20 {
            input.removeFirst(consumed)
            consumed = 0
        }
        var buf = [UInt8](repeating: 0, count: 1 << 16)
        let got = recv(fd, &buf, buf.count, 0)
        guard got > 0 else { throw LoadError("connection closed") }
        input += buf[..<got]
    }
}
