/// Programs that need nothing of an application: what a NIC does without FlexNIC, the
/// thesis' key-steering example, and a reflector (`Configs/steering/` holds them as
/// files, written by `flexbench programs`).
extension SteeringProgram {
    /// RSS-style flow steering: Toeplitz over the 4-tuple, the redirection table to a
    /// queue. What a NIC without FlexNIC does; the baseline for key steering.
    public static func receiveSideScaling(ipProtocol: UInt8 = 6, queues: Int = 2) -> SteeringProgram {
        SteeringProgram(name: "tcp-flow", queues: queues, stages: [
            .init("flow", fields: [FieldMatch(.ipProtocol, .exact(UInt64(ipProtocol)))],
                  actions: [.hash(.fourTuple), .writeHash, .strip(.l4), .redirect]),
        ])
    }

    /// Every IPv4 frame back where it came from: the reply action alone (swap MACs,
    /// addresses and ports, fix checksums). What `flexbench reflect` runs.
    public static let reflector = SteeringProgram(name: "reflect", queues: 1, stages: [
        .init("reflect-ipv4", fields: [FieldMatch(.etherType, .exact(0x0800))], actions: [.reply([.swapEthernet, .swapIPv4, .swapPorts])]),
    ])

    /// Key-based steering of memcached-over-UDP GETs as the thesis (5.1) shows it, in
    /// three stages: the payload after the 8-byte frame header, the key hashed once and
    /// handed to the core, the redirection table to the owning core. `flexbench micro`
    /// runs it; flexkvs's own program (`KVSPrograms.key`) also knows the other
    /// commands, binary requests, reply offload and placed SETs.
    public static func thesisKeySteering(port: UInt16 = 11211, queues: Int = 2) -> SteeringProgram {
        SteeringProgram(name: "kvs-udp-key", queues: queues, stages: [
            .init("udp-memcached", fields: [FieldMatch(.ipProtocol, .exact(17)), FieldMatch(.destinationPort, .exact(UInt64(port)))],
                  actions: [.strip(.l4)]),
            .init("get-key", payload: [PayloadMatch(offset: 8, text: "get ")],
                  actions: [.hash(.payloadToken(offset: 12, maxLength: 250)), .writeHash]),
            .init("steer", fields: [FieldMatch(.destinationPort, .exact(UInt64(port)))], actions: [.redirect]),
        ])
    }
}
