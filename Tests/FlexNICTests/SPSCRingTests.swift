import FlexNIC
import Foundation
import Testing

@Suite struct SPSCRingTests {
    @Test func fillsToCapacityThenRefuses() {
        let ring = SPSCRing<Int>(capacity: 8)
        for i in 0..<8 { #expect(ring.enqueue(i)) }
        #expect(!ring.enqueue(99))
        #expect(ring.isFull)
        #expect(ring.dequeue() == 0)
        #expect(ring.enqueue(8))
        var out: [Int] = []
        while let x = ring.dequeue() { out.append(x) }
        #expect(out == Array(1...8))
        #expect(ring.isEmpty)
    }

    @Test func batchesStopAtTheBoundary() {
        let ring = SPSCRing<UInt64>(capacity: 16)
        let input = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)
        let output = UnsafeMutablePointer<UInt64>.allocate(capacity: 64)
        defer { input.deallocate(); output.deallocate() }
        for i in 0..<64 { input[i] = UInt64(i) }
        #expect(ring.enqueue(input, count: 10) == 10)
        #expect(ring.enqueue(input + 10, count: 64) == 6)   // only 6 slots left
        #expect(ring.dequeue(into: output, maximum: 4) == 4)
        #expect(ring.enqueue(input + 16, count: 10) == 4)
        #expect(ring.dequeue(into: output + 4, maximum: 64) == 16)
        #expect((0..<20).map { output[$0] } == (0..<20).map(UInt64.init))
    }

    /// Two threads pass 200,000 items in odd-sized batches; the consumer checks the
    /// order and a checksum of everything that passed.
    @Test func twoThreadsPassEverythingInOrder() async {
        let ring = SPSCRing<UInt64>(capacity: 256)
        let total = 200_000
        let done = DispatchSemaphore(value: 0)
        Thread {
            let buffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 37)
            defer { buffer.deallocate() }
            var next = 0
            var size = 1
            while next < total {
                let n = min(size, total - next)
                for i in 0..<n { buffer[i] = UInt64(next + i) &* 2_654_435_761 }
                next += ring.enqueue(buffer, count: n)
                size = size % 37 + 1
            }
            done.signal()
        }.start()
        let out = UnsafeMutablePointer<UInt64>.allocate(capacity: 41)
        defer { out.deallocate() }
        var received = 0
        var checksum: UInt64 = 0
        var inOrder = true
        var size = 41
        while received < total {
            let n = ring.dequeue(into: out, maximum: size)
            for i in 0..<n {
                inOrder = inOrder && out[i] == UInt64(received + i) &* 2_654_435_761
                checksum &+= out[i]
            }
            received += n
            size = size == 1 ? 41 : size - 1
        }
        done.wait()
        let expected = (0..<total).reduce(UInt64(0)) { $0 &+ UInt64($1) &* 2_654_435_761 }
        #expect(inOrder)
        #expect(checksum == expected)
        #expect(ring.dequeue() == nil)
    }

    @Test func descriptorsFillOneCacheLine() {
        #expect(MemoryLayout<Descriptor>.size <= 56)
        let ring = DescriptorRing(capacity: 64)
        #expect(ring.memoryFootprint == 64 * 64 + 128)
    }
}
