/// ARP for IPv4 over Ethernet (RFC 826), untagged frames: what a host on a kernel-bypass
/// port needs to be reachable (answer requests for its own address) and to reach a peer
/// (ask for the peer's MAC).
public enum ARP {
    /// An Ethernet frame carrying ARP: 14 + 28 bytes (senders pad it to 60 on the wire).
    public static let frameLength = EthernetHeader.length + 28
    static let request: UInt16 = 1
    static let reply: UInt16 = 2

    /// Offsets in the frame of the ARP fields.
    enum Field {
        static let hardwareType = 14, protocolType = 16, sizes = 18, operation = 20
        static let senderMAC = 22, senderAddress = 28, targetMAC = 32, targetAddress = 38
    }

    /// Whether `frame` is an Ethernet/IPv4 ARP packet with operation `op`.
    static func isARP(_ frame: UnsafeRawBufferPointer, operation op: UInt16) -> Bool {
        guard frame.count >= frameLength, let b = frame.baseAddress else { return false }
        return b.loadBE16(at: 12) == EthernetHeader.EtherType.arp.rawValue
            && b.loadBE16(at: Field.hardwareType) == 1 && b.loadBE16(at: Field.protocolType) == 0x0800
            && b.loadBE16(at: Field.sizes) == 0x0604 && b.loadBE16(at: Field.operation) == op
    }

    /// If `frame` is a request asking who has `address`, rewrites it in place into the
    /// reply saying `mac` has it, addressed to the asker, and returns true. Any other
    /// frame is left as it is.
    public static func answer(_ frame: UnsafeMutableRawBufferPointer, for address: IPv4Address, with mac: MACAddress) -> Bool {
        guard isARP(UnsafeRawBufferPointer(frame), operation: request), let b = frame.baseAddress,
              UnsafeRawPointer(b).loadBE32(at: Field.targetAddress) == address.value else { return false }
        let asker = MACAddress.load(from: b + Field.senderMAC)
        let askerAddress = UnsafeRawPointer(b).loadBE32(at: Field.senderAddress)
        asker.store(to: b)
        mac.store(to: b + 6)
        b.storeBE16(reply, at: Field.operation)
        mac.store(to: b + Field.senderMAC)
        b.storeBE32(address.value, at: Field.senderAddress)
        asker.store(to: b + Field.targetMAC)
        b.storeBE32(askerAddress, at: Field.targetAddress)
        return true
    }

    /// Writes a broadcast request asking who has `target`; returns the frame length
    /// (60: padded to Ethernet's minimum), or 0 if `buffer` is too small.
    public static func writeRequest(into buffer: UnsafeMutableRawBufferPointer, from mac: MACAddress,
                                    address: IPv4Address, asking target: IPv4Address) -> Int {
        guard buffer.count >= 60, let b = buffer.baseAddress else { return 0 }
        b.initializeMemory(as: UInt8.self, repeating: 0, count: 60)
        MACAddress.broadcast.store(to: b)
        mac.store(to: b + 6)
        b.storeBE16(EthernetHeader.EtherType.arp.rawValue, at: 12)
        b.storeBE16(1, at: Field.hardwareType)
        b.storeBE16(0x0800, at: Field.protocolType)
        b.storeBE16(0x0604, at: Field.sizes)
        b.storeBE16(request, at: Field.operation)
        mac.store(to: b + Field.senderMAC)
        b.storeBE32(address.value, at: Field.senderAddress)
        b.storeBE32(target.value, at: Field.targetAddress)
        return 60
    }

    /// The MAC `frame` announces for `target`, if it is an ARP reply from it.
    public static func replier(_ frame: UnsafeRawBufferPointer, for target: IPv4Address) -> MACAddress? {
        guard isARP(frame, operation: reply), let b = frame.baseAddress,
              b.loadBE32(at: Field.senderAddress) == target.value else { return nil }
        return MACAddress.load(from: b + Field.senderMAC)
    }
}
