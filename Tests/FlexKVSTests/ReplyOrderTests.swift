@testable import FlexKVS
import Testing

extension ReplyOrder {
    mutating func fill(_ sequence: UInt16, with text: String, in output: inout [UInt8]) -> Bool {
        Array(text.utf8).withUnsafeBytes { fill(sequence, with: $0, in: &output) }
    }
}

@Suite struct ReplyOrderTests {
    /// Replies filled out of order land where their requests were; only the bytes
    /// before the first hole are sendable, and sending shifts the holes.
    @Test func holesKeepRequestOrder() {
        var order = ReplyOrder()
        var output = Array("a".utf8)
        let first = order.open(at: output.count)
        output += Array("c".utf8)
        let second = order.open(at: output.count)
        #expect(order.sendable(output) == 1)
        output.removeFirst(1)
        order.sent(1)
        #expect(order.fill(second, with: "d", in: &output))
        #expect(String(decoding: output, as: UTF8.self) == "cd" && order.sendable(output) == 0)
        #expect(order.fill(first, with: "b", in: &output))
        #expect(String(decoding: output, as: UTF8.self) == "bcd" && order.isEmpty && order.sendable(output) == 3)
        #expect(!order.fill(first, with: "x", in: &output))
    }
}
