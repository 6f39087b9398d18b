import FlexIO
import FlexWire

extension SteeringPipeline {
    /// Applies a stage's reply edits to the packet in place (the received packet is the
    /// reply's template), then fixes lengths and the IPv4 and L4 checksums. False if an
    /// edit does not fit the packet (the caller sends it to the slow path).
    func buildReply(_ p: inout Packet, _ f: ParsedFrame, edits start: Int, count: Int, _ st: PacketState) -> Bool {
        let base = p.data
        let l3 = Int(f.l3Offset), l4 = Int(f.l4Offset)
        let isIPv4 = f.layers.contains(.ipv4)
        var frameLength = Int(f.frameLength)
        for k in start..<(start + count) {
            let e = code.edits[k]
            switch e.op {
            case .swapEthernet:
                guard let eth = try? EthernetHeader(p.bytes) else { return false }
                eth.swapAddresses()
            case .swapIPv4:
                guard isIPv4 else { return false }
                IPv4Header(unchecked: base + l3, headerLength: l4 - l3).swapAddresses()
            case .swapPorts:
                guard f.hasPorts else { return false }
                base.swapFields(UInt16.self, at: l4, l4 + 2)  // ports lead UDP, TCP and DCCP alike
            case .set:
                guard set(e.field, e.value, base: base, f) else { return false }
            case .dccpAck:
                guard f.layers.contains(.dccp), let length = dccpAck(base: base, f, capacity: Int(p.capacity)) else { return false }
                frameLength = length
            case .dccpAckToSender:
                guard let sequence = st.dccpSequence else { return false }
                let n: UInt64
                if e.value == 0 {
                    n = sequence
                } else {
                    guard st.flowRow >= 0 else { return false }
                    n = flows.unsafelyUnwrapped[Int(st.flowRow), Int(e.value &- 1)]
                }
                guard let length = FrameBuilder.rewriteDCCPDataAsAck(base, capacity: Int(p.capacity), parsed: f, dccpOffset: Int(st.dccpOffset),
                                                                     acknowledgement: n) else { return false }
                // Addresses, ports, lengths and checksums are done.
                if k == start + count - 1 {
                    p.length = UInt32(length)
                    return true
                }
                frameLength = length
            case .truncate:
                let payloadEnd = Int(f.payloadOffset) + Int(e.value)
                if payloadEnd < frameLength { frameLength = payloadEnd }
            }
        }
        p.length = UInt32(frameLength)
        guard isIPv4 else { return true }
        let ip = IPv4Header(unchecked: base + l3, headerLength: l4 - l3)
        base.storeBE16(UInt16(frameLength - l3), at: l3 + 2)
        ip.updateChecksum()
        let l4Length = frameLength - l4
        if f.layers.contains(.udp) {
            let udp = UDPHeader(unchecked: base + l4)
            let hadChecksum = udp.checksum != 0
            udp.length = l4Length
            if hadChecksum { udp.updateChecksum(ip: ip) }
        } else if f.layers.contains(.tcp) {
            TCPHeader(unchecked: base + l4, headerLength: Int(f.payloadOffset) - l4).updateChecksum(ip: ip, segmentLength: l4Length)
        } else if f.layers.contains(.dccp) {
            guard let d = try? DCCPHeader(UnsafeMutableRawBufferPointer(start: base + l4, count: l4Length)),
                  (try? d.updateChecksum(ip: ip, packetLength: l4Length)) != nil else { return false }
        }
        return true
    }

    /// `replyFromTable`: on a hit, rewrites the packet into the stored reply (kept
    /// payload prefix + reply), swaps addresses and ports, fixes lengths and checksums.
    /// `knownKeyLength`: the key's length, if a `hashToken` of this stage found it at
    /// `keyOffset` (with the same limit: then the search would find it again).
    func answerFromTable(_ p: inout Packet, _ f: ParsedFrame, hash: UInt32, keyOffset: Int, maxKeyLength: Int, keep: Int,
                         knownKeyLength: Int? = nil) -> Bool {
        guard let table = replyTable, f.layers.contains(.ipv4), f.layers.contains(.udp) else { return false }
        let payloadStart = Int(f.payloadOffset), payloadLength = Int(f.payloadLength)
        let payload = UnsafeRawPointer(p.data) + payloadStart
        guard keyOffset < payloadLength, keep <= payloadLength else { return false }
        let n = knownKeyLength ?? TextToken.length(payload + keyOffset, limit: min(payloadLength - keyOffset, maxKeyLength + 1))
        // The key must end the request: "<key>\r\n" and nothing after it.
        guard n > 0, n <= maxKeyLength, keyOffset + n + 2 == payloadLength,
              payload.load(fromByteOffset: keyOffset + n, as: UInt8.self) == 0x0D,
              payload.load(fromByteOffset: keyOffset + n + 1, as: UInt8.self) == 0x0A else { return false }
        let room = Int(p.capacity) - payloadStart - keep
        guard room > 0, let length = table.lookup(hash: hash, key: payload + keyOffset, keyLength: n,
                                                  into: replyScratch, room: min(room, ReplyTable.capacity)) else { return false }
        (p.data + payloadStart + keep).copyMemory(from: replyScratch, byteCount: length)
        let l3 = Int(f.l3Offset), l4 = Int(f.l4Offset)
        guard let eth = try? EthernetHeader(p.bytes) else { return false }
        eth.swapAddresses()
        let ip = IPv4Header(unchecked: p.data + l3, headerLength: l4 - l3)
        ip.swapAddresses()
        let udp = UDPHeader(unchecked: p.data + l4)
        udp.swapPorts()
        let frameLength = payloadStart + keep + length
        p.length = UInt32(frameLength)
        p.data.storeBE16(UInt16(frameLength - l3), at: l3 + 2)
        ip.updateChecksum()
        let hadChecksum = udp.checksum != 0
        udp.length = frameLength - l4
        if hadChecksum { udp.updateChecksum(ip: ip) }
        return true
    }

    func set(_ field: CompiledProgram.Source, _ v: UInt64, base: UnsafeMutableRawPointer, _ f: ParsedFrame) -> Bool {
        let l3 = Int(f.l3Offset), l4 = Int(f.l4Offset)
        switch field {
        case .etherType: base.storeBE16(UInt16(truncatingIfNeeded: v), at: l3 - 2)
        case .vlanID:
            guard f.layers.contains(.vlan) else { return false }
            let tci = UnsafeRawPointer(base).loadBE16(at: 14)
            base.storeBE16(tci & 0xF000 | UInt16(truncatingIfNeeded: v) & 0x0FFF, at: 14)
        case .sourceAddress, .destinationAddress:
            guard f.layers.contains(.ipv4) else { return false }
            base.storeBE32(UInt32(truncatingIfNeeded: v), at: l3 + (field == .sourceAddress ? 12 : 16))
        case .sourcePort, .destinationPort:
            guard f.hasPorts else { return false }
            base.storeBE16(UInt16(truncatingIfNeeded: v), at: l4 + (field == .sourcePort ? 0 : 2))
        case .tcpFlags:
            guard f.layers.contains(.tcp) else { return false }
            base.storeByte(UInt8(truncatingIfNeeded: v) & 0x3F, at: l4 + 13)
        case .dccpType:
            guard f.layers.contains(.dccp) else { return false }
            let b = UnsafeRawPointer(base).loadByte(at: l4 + 8)
            base.storeByte(b & 0xE1 | (UInt8(truncatingIfNeeded: v) & 0x0F) << 1, at: l4 + 8)
        case .ipProtocol, .payloadLength, .payloadWord, .dccpExtended, .dccpSourcePort, .dccpDestinationPort, .dccpSequence,
             .flowState, .flowRegister, .comparison, .placement:
            return false  // rejected when the program is validated
        }
        return true
    }

    /// Rewrites a DCCP Data/DataAck (X=1) packet into its Ack; returns the new frame
    /// length, or nil if the packet cannot be turned into an Ack.
    func dccpAck(base: UnsafeMutableRawPointer, _ f: ParsedFrame, capacity: Int) -> Int? {
        let l4 = Int(f.l4Offset)
        return DCCPHeader.rewriteAsAck(at: base + l4, capacity: capacity - l4).map { l4 + $0 }
    }
}
