import FlexNIC

/// How a replay spreads packets over IDS instances. Every mode keeps both directions of
/// a flow on one instance (flow state is per instance), so the alerts do not depend on
/// the mode as long as every instance's flow table holds its flows (a full table is
/// counted: its overflow flows are inspected without state); what changes is which rule
/// groups each instance's cache must hold.
public enum SteeringMode: String, CaseIterable, Sendable {
    /// NIC receive-side scaling: Toeplitz over the 4-tuple with the repeating 0x6d5a key,
    /// which hashes both directions alike (what IDS deployments configure).
    case hash
    /// FlexNIC's symmetric hash: addresses and ports each put in order, then Toeplitz
    /// (`Configs/steering/ids-symmetric.toml`).
    case symmetric
    /// The table `flexids partition` wrote: flow groups pinned to instances, symmetric
    /// hashing for the rest.
    case partition
}

/// The FlexNIC programs behind the steering modes.
public enum IDSSteering {
    /// A Toeplitz key under which swapping source and destination (addresses and ports)
    /// does not change the hash: its 16-bit period matches the fields' widths.
    public static let symmetricRSSKey: [UInt8] = (0..<40).map { $0 % 2 == 0 ? 0x6D : 0x5A }

    /// The stages that hash IPv4 and IPv6 packets (Toeplitz over the 4-tuple; IPv6 over
    /// its 128-bit addresses) to an instance.
    static func hashStages(_ input: HashInput, name: String = "") -> [SteeringProgram.Stage] {
        [(0x0800, "ipv4"), (0x86DD, "ipv6")].map { type, family in
            SteeringProgram.Stage(name.isEmpty ? family : "\(name) (\(family))", fields: [FieldMatch(.etherType, .exact(type))],
                                  actions: [.hash(input), .redirect])
        }
    }

    /// IPv4 and IPv6 packets are hashed to an instance; anything else goes to instance 0.
    public static func hashProgram(instances: Int, symmetricSort: Bool) -> SteeringProgram {
        SteeringProgram(
            name: symmetricSort ? "ids-symmetric" : "ids-hash", queues: instances,
            stages: hashStages(symmetricSort ? .symmetricFourTuple : .fourTuple),
            defaultDisposition: .queue(0), toeplitzKey: symmetricSort ? ToeplitzHash.microsoftKey : symmetricRSSKey)
    }

    /// The partition program: for each flow group, a stage per direction that sends it
    /// to its instance, or spreads it over its instances by a symmetric hash (pairs of
    /// service ports first, so both directions of a flow meet the same pair of stages),
    /// then symmetric hashing for the rest. A program has at most
    /// `SteeringProgram.maximumStages` stages: the lightest flow groups beyond that are
    /// left to the hash stage (`omitted` counts them).
    public static func partitionProgram(assignment: [Profile.Assignment], instances: Int) -> (program: SteeringProgram, omitted: Int) {
        let kept = assignment.sorted { $0.share > $1.share }.prefix((SteeringProgram.maximumStages - 2) / 2)
        var stages: [SteeringProgram.Stage] = []
        func stage(_ name: String, _ fields: [FieldMatch], _ instances: [Int]) {
            stages.append(.init(name, fields: fields,
                                actions: instances.count == 1 ? [.toQueue(instances[0])] : [.hash(.symmetricFourTuple), .spread(instances)]))
        }
        // Pairs of service ports, then single service ports, then a protocol's other flows.
        func rank(_ g: FlowGroup) -> Int { g.low != 0 ? 0 : g.high != 0 ? 1 : 2 }
        let ordered = kept.sorted { rank($0.group) != rank($1.group) ? rank($0.group) < rank($1.group) : $0.group < $1.group }
        for a in ordered {
            let (g, instance, share) = (a.group, a.instances, a.share)
            let proto = FieldMatch(.ipProtocol, .exact(UInt64(g.proto)))
            func port(_ f: MatchField, _ p: UInt16) -> FieldMatch { FieldMatch(f, .exact(UInt64(p))) }
            let label = "\(g) (\(String(format: "%.1f", share * 100)) % of profiled cycles)"
            switch (g.low, g.high) {
            case (0, 0):
                stage(label, [proto], instance)
            case (0, let p):
                stage(label + " to server", [proto, port(.destinationPort, p)], instance)
                stage(label + " to client", [proto, port(.sourcePort, p)], instance)
            case (let a, let b):
                stage(label + " a->b", [proto, port(.sourcePort, a), port(.destinationPort, b)], instance)
                stage(label + " b->a", [proto, port(.sourcePort, b), port(.destinationPort, a)], instance)
            }
        }
        stages += hashStages(.symmetricFourTuple, name: "outside the profile")
        return (SteeringProgram(name: "ids-partition", queues: instances, stages: stages, defaultDisposition: .queue(0)),
                assignment.count - kept.count)
    }
}
