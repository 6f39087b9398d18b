import FlexWire
import Testing

@Suite struct ARPTests {
    let asker = MACAddress(0x02, 0, 0, 0, 0, 0xA1)
    let owner = MACAddress(0x02, 0, 0, 0, 0, 0xB2)
    let askerIP = IPv4Address(198, 18, 0, 1)
    let ownerIP = IPv4Address(198, 18, 0, 2)

    func request(for target: IPv4Address) -> [UInt8] {
        var frame = [UInt8](repeating: 0xEE, count: 64)
        let n = frame.withUnsafeMutableBytes { ARP.writeRequest(into: $0, from: asker, address: askerIP, asking: target) }
        #expect(n == 60)
        return Array(frame[..<n])
    }

    @Test func requestForOurAddressTurnsIntoTheReply() {
        var frame = request(for: ownerIP)
        #expect(frame[..<6].allSatisfy { $0 == 0xFF }, "a request is broadcast")
        let answered = frame.withUnsafeMutableBytes { ARP.answer($0, for: ownerIP, with: owner) }
        #expect(answered)
        // The asker learns the owner's MAC from the reply, which is addressed to it.
        #expect(frame.withUnsafeBytes { ARP.replier($0, for: ownerIP) } == owner)
        #expect(Array(frame[0..<6]) == [0x02, 0, 0, 0, 0, 0xA1])
        #expect(Array(frame[6..<12]) == [0x02, 0, 0, 0, 0, 0xB2])
        #expect(Array(frame[32..<38]) == [0x02, 0, 0, 0, 0, 0xA1], "target MAC is the asker")
        #expect(Array(frame[38..<42]) == [198, 18, 0, 1], "target address is the asker's")
    }

    @Test func otherFramesAreLeftAlone() {
        var forSomeoneElse = request(for: IPv4Address(198, 18, 0, 9))
        let before = forSomeoneElse
        #expect(!forSomeoneElse.withUnsafeMutableBytes { ARP.answer($0, for: ownerIP, with: owner) })
        #expect(forSomeoneElse == before)
        // A request is not a reply; a reply is not answered; short frames are not ARP.
        #expect(request(for: ownerIP).withUnsafeBytes { ARP.replier($0, for: ownerIP) } == nil)
        var reply = request(for: ownerIP)
        _ = reply.withUnsafeMutableBytes { ARP.answer($0, for: ownerIP, with: owner) }
        #expect(!reply.withUnsafeMutableBytes { ARP.answer($0, for: ownerIP, with: owner) })
        var short = Array(request(for: ownerIP)[..<40])
        #expect(!short.withUnsafeMutableBytes { ARP.answer($0, for: ownerIP, with: owner) })
    }
}
