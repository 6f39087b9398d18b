/// The memcached workload of the thesis (6.2.2): N keys of fixed size, fixed-size
/// values, a GET/SET mix, keys drawn from a Zipf (s) or uniform distribution.
struct KVSWorkload {
    enum Distribution: String { case zipf, uniform }

    let keys: Int
    let keySize: Int
    let valueSize: Int
    let getRatio: Double
    /// All keys, `keySize` bytes each, back to back ("k000…123").
    let keyBytes: [UInt8]
    let value: [UInt8]
    /// Cumulative probabilities for Zipf sampling (empty for uniform).
    let cdf: [Double]

    init(keys: Int, keySize: Int, valueSize: Int, distribution: Distribution, zipf s: Double, getRatio: Double) {
        self.keys = keys
        self.keySize = keySize
        self.valueSize = valueSize
        self.getRatio = getRatio
        var bytes = [UInt8]()
        bytes.reserveCapacity(keys * keySize)
        for i in 0..<keys {
            let digits = Array(String(i).utf8)
            bytes.append(0x6B)  // "k"
            bytes += [UInt8](repeating: 0x30, count: keySize - 1 - digits.count) + digits
        }
        keyBytes = bytes
        value = (0..<valueSize).map { UInt8(0x61 + $0 % 26) }
        if distribution == .zipf {
            var weights = (1...keys).map { 1.0 / Foundation.pow(Double($0), s) }
            let total = weights.reduce(0, +)
            var acc = 0.0
            for i in weights.indices { acc += weights[i] / total; weights[i] = acc }
            cdf = weights
        } else {
            cdf = []
        }
    }

    /// A key index drawn from the distribution.
    func sampleKey(_ rng: inout Xorshift) -> Int {
        guard !cdf.isEmpty else { return Int(rng.next() % UInt64(keys)) }
        let u = rng.unit()
        var lo = 0, hi = cdf.count - 1
        while lo < hi {
            let mid = (lo + hi) / 2
            if cdf[mid] < u { lo = mid + 1 } else { hi = mid }
        }
        return lo
    }

    func key(_ i: Int) -> ArraySlice<UInt8> { keyBytes[(i * keySize)..<((i + 1) * keySize)] }
}

/// A small, fast, seeded generator (xorshift64*): the load must not be limited by the RNG.
struct Xorshift {
    var state: UInt64
    init(seed: UInt64) { state = seed == 0 ? 0x9E37_79B9_7F4A_7C15 : seed }
    mutating func next() -> UInt64 {
        state ^= state >> 12
        state ^= state << 25
        state ^= state >> 27
        return state &* 0x2545_F491_4F6C_DD1D
    }
    mutating func unit() -> Double { Double(next() >> 11) / Double(1 << 53) }
}

import Foundation
