@testable import FlexKVS
import FlexWire
import Testing

extension SessionBytes {
    mutating func append(_ text: String) {
        Array(text.utf8).withUnsafeBytes { append(contentsOf: $0) }
    }
    var text: String { withUnsafeBytes { String(decoding: $0, as: UTF8.self) } }
}

@Suite struct SessionBytesTests {
    /// A session's bytes hold what an array given the same appends, inserts, removals
    /// and truncations holds (20,000 seeded steps, from no room to about 4 KB: every
    /// growth and every move).
    @Test func holdWhatAnArrayWould() {
        var rng = SplitMix64(seed: 16)
        var bytes = SessionBytes(capacity: 0)
        var model: [UInt8] = []
        var longest = 0
        for step in 0..<20_000 {
            let chunk = (0..<Int(rng.next() % 70)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            switch rng.next() % 6 {
            case 0, 1:
                chunk.withUnsafeBytes { bytes.append(contentsOf: $0) }
                model += chunk
            case 2:
                bytes.append(chunk.first ?? 7)
                model.append(chunk.first ?? 7)
            case 3:
                let at = Int(rng.next() % UInt64(model.count + 1))
                chunk.withUnsafeBytes { bytes.insert(contentsOf: $0, at: at) }
                model.insert(contentsOf: chunk, at: at)
            case 4:
                let n = Int(rng.next() % UInt64(min(model.count, 60) + 1))
                bytes.removeFirst(n)
                model.removeFirst(n)
            default:
                if model.count > 4_000 || rng.next() % 16 == 0 {
                    let to = Int(rng.next() % UInt64(model.count + 1))
                    bytes.truncate(to: to)
                    model.removeSubrange(to...)
                }
            }
            longest = max(longest, model.count)
            let same = bytes.withUnsafeBytes { Array($0) } == model
            #expect(same && bytes.count <= bytes.capacity, "step \(step)")
            if !same { return }
        }
        bytes.removeAll()
        #expect(bytes.isEmpty && bytes.capacity >= longest && longest > 1_000)
    }
}
