import FlexNIC
import FlexWire

/// flexkvs's steering programs: what the FlexNIC pipeline of each worker runs on its
/// TCP and UDP queues, per steering mode. Payload offsets count from the UDP payload,
/// which starts with memcached's 8-byte frame header.
public enum KVSPrograms {
    /// Flow steering (and TCP under key steering): everything addressed to the server's
    /// port goes to this worker's own queue; the kernel chose the worker by the flow.
    static func flow(protocolNumber: UInt8, port: UInt16, queues: Int, own: Int) -> SteeringProgram {
        SteeringProgram(name: protocolNumber == 6 ? "kvs-tcp-flow" : "kvs-udp-flow", queues: queues, stages: [
            .init("memcached", fields: [FieldMatch(.ipProtocol, .exact(UInt64(protocolNumber))),
                                        FieldMatch(.destinationPort, .exact(UInt64(port)))],
                  actions: [.strip(.l4), .toQueue(own)]),
        ])
    }

    /// Strips memcached UDP datagrams to their payload (the frame header comes first) and
    /// lets later stages look at the request.
    static func udpPayload(port: UInt16) -> SteeringProgram.Stage {
        .init("memcached-udp", fields: [FieldMatch(.ipProtocol, .exact(17)), FieldMatch(.destinationPort, .exact(UInt64(port)))],
              actions: [.strip(.l4)])
    }

    /// The reply-offload stage: a single-datagram `get <key>` is answered from the reply
    /// table when it holds the key; otherwise the hash it computed goes on to `then`.
    static func offloadStage(then: [Action]) -> SteeringProgram.Stage {
        let header = MemcachedUDPFrame.headerLength
        return .init("ascii-get-offload",
                     fields: [FieldMatch(.payloadWord(offset: MemcachedUDPFrame.sequenceAndCountOffset, width: 4), .exact(1))],  // sequence 0 of 1 datagram
                     payload: [PayloadMatch(offset: header, text: "get ")],
                     actions: [.hash(.payloadToken(offset: header + 4, maxLength: TextProtocol.maxKeyLength)),
                               .replyFromTable(keyOffset: header + 4, maxKeyLength: TextProtocol.maxKeyLength, keepPrefix: header)]
                        + then)
    }

    /// Flow steering over UDP, with reply offload: like `flow`, but hot GETs are
    /// answered by the pipeline.
    static func flowWithOffload(port: UInt16, queues: Int, own: Int) -> SteeringProgram {
        var p = flow(protocolNumber: 17, port: port, queues: queues, own: own)
        p.stages.insert(udpPayload(port: port), at: 0)
        p.stages.insert(offloadStage(then: [.writeHash, .toQueue(own)]), at: 1)
        return p
    }

    /// Key steering over UDP: parse the request after the 8-byte frame header, hash its
    /// (first) key, write the hash into the descriptor, redirect to the owning worker.
    /// Requests without a key (stats, version, ...) stay with this worker.
    ///
    /// With `placing` (dma steering), binary SETs (and SETQs) in one datagram are also
    /// appended to the owning worker's log segments from the frame header's last 4 bytes
    /// on, which puts the key 40 bytes after the record's start: an item's layout
    /// (`PlacementLog`). And binary GETs without extras alone in their datagram (sequence
    /// 0 of 1) match a stage of their own, `parsedGetStage`, whose index the descriptor
    /// carries (`detail`): the owning worker answers them from the item without running
    /// the protocol (`Worker.serveParsedGet`), as the thesis' GET fast path (figure 5.1)
    /// hands the core a parsed request.
    public static func key(port: UInt16, queues: Int, own: Int, offload: Bool, placing: Bool = false) -> SteeringProgram {
        let header = MemcachedUDPFrame.headerLength
        let binaryKey = HashInput.payloadField(offset: header + BinaryProtocol.headerSize, lengthAt: header + 2, skipAt: header + 4)
        // A binary request alone in its datagram (sequence 0 of 1): `opcode` and the
        // extras length as given.
        func loneBinary(opcode: FieldPattern, extrasLength: UInt64) -> [FieldMatch] {
            [FieldMatch(.destinationPort, .exact(UInt64(port))),
             FieldMatch(.payloadWord(offset: MemcachedUDPFrame.sequenceAndCountOffset, width: 4), .exact(1)),
             FieldMatch(.payloadWord(offset: header, width: 1), .exact(UInt64(BinaryProtocol.requestMagic))),
             FieldMatch(.payloadWord(offset: header + 1, width: 1), opcode),
             FieldMatch(.payloadWord(offset: header + 4, width: 1), .exact(extrasLength))]
        }
        func text(_ command: String) -> SteeringProgram.Stage {
            .init("ascii-\(command)", payload: [PayloadMatch(offset: header, text: command + " ")],
                  actions: [.hash(.payloadToken(offset: header + command.utf8.count + 1, maxLength: TextProtocol.maxKeyLength)),
                            .writeHash, .redirect])
        }
        return SteeringProgram(name: "kvs-udp-key", queues: queues, stages: [udpPayload(port: port)] + (offload ? [offloadStage(then: [.writeHash, .redirect])] : []) + [
            text("get"), text("gets"), text("set"), text("delete"),
        ] + (placing ? [
            .init("binary-set-placed", fields: loneBinary(opcode: .masked(0x01, mask: 0xEF), extrasLength: 8),  // SET, SETQ; flags + expiry
                  actions: [.hash(binaryKey), .writeHash, .redirect,
                            .appendToLog(offset: header - PlacementLog.recordPrefix, length: nil)]),
            .init(parsedGetStage, fields: loneBinary(opcode: .exact(UInt64(BinaryProtocol.Op.get.rawValue)), extrasLength: 0),
                  actions: [.hash(binaryKey), .writeHash, .redirect]),
        ] : []) + [
            .init("binary", fields: [FieldMatch(.destinationPort, .exact(UInt64(port))),
                                     FieldMatch(.payloadWord(offset: header, width: 1), .exact(UInt64(BinaryProtocol.requestMagic)))],
                  actions: [.hash(binaryKey), .writeHash, .redirect]),
            .init("other", fields: [FieldMatch(.ipProtocol, .exact(17)), FieldMatch(.destinationPort, .exact(UInt64(port)))],
                  actions: [.toQueue(own)]),
        ])
    }

    /// The name of dma steering's stage for binary GETs the worker answers without the
    /// protocol handler (`key(placing: true)`).
    static let parsedGetStage = "binary-get-parsed"

    /// `program` with every stage also requiring the frame to be addressed to `address`
    /// (on an Ethernet link the port sees other hosts' traffic and ARP; those frames
    /// take the program's default, the slow path).
    static func addressed(to address: IPv4Address, _ program: SteeringProgram) -> SteeringProgram {
        var p = program
        for i in p.stages.indices {
            p.stages[i].fields.insert(FieldMatch(.destinationAddress, .exact(UInt64(address.value))), at: 0)
        }
        return p
    }
}
