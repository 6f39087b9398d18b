@testable import FlexKVS
import Testing

extension ReplyOrder {
    mutating func fill(_ sequence: UInt16, with text: String, in output: inout SessionBytes) -> Bool {
        Array(text.utf8).withUnsafeBytes { fill(sequence, with: $0, in: &output) }
    }
}

@Suite struct ReplyOrderTests {
    /// Replies filled out of order land where their requests were; only the bytes
    /// before the first hole are sendable, and sending shifts the holes.
    @Test func holesKeepRequestOrder() {
        var order = ReplyOrder()
        var output = SessionBytes(capacity: 0)
        output.append("a")
        let first = order.open(at: output.count)
        output.append("c")
        let second = order.open(at: output.count)
        #expect(order.sendable(ofOutput: output.count) == 1)
        output.removeFirst(1)
        order.sent(1)
        #expect(order.fill(second, with: "d", in: &output))
        #expect(output.text == "cd" && order.sendable(ofOutput: output.count) == 0)
        #expect(order.fill(first, with: "b", in: &output))
        #expect(output.text == "bcd" && order.isEmpty && order.sendable(ofOutput: output.count) == 3)
        #expect(!order.fill(first, with: "x", in: &output))
    }
}
