import ArgumentParser
import FlexCLI
import FlexConfig
import FlexIDS
import FlexKVS
import FlexNIC
import Foundation

/// `flexbench programs`: the steering programs the servers build, written as the TOML
/// files in `Configs/steering/` (the code is their one source; tests check the files).
struct Programs: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write the steering programs the servers run as TOML (Configs/steering/ is this output).",
        discussion: "With --check, write nothing and fail if a file differs from what the code builds.")

    @Option(name: .output, help: "Directory to write into.") var out = "Configs/steering"
    @Flag(help: "Compare the files with the programs instead of writing them.") var check = false

    /// File name, header comment, program.
    static var shipped: [(name: String, comment: String, program: SteeringProgram)] {
        [
            ("kvs-udp-key", """
                Key-based steering of memcached-over-UDP GETs as the thesis (5.1) shows it: the
                pipeline parses the request, hashes the key once, hands the hash to the owning core,
                and steers the packet there. What `flexbench micro` runs; flexkvs's own program,
                which also knows the other commands, is flexkvs-udp-key.toml.
                """, .thesisKeySteering()),
            ("flexkvs-udp-key", """
                What `flexkvs -U 11211 -t 2 --steering key` runs on worker 0's UDP queue (reply
                offload on): key steering of text and binary requests to the key's shard.
                """, KVSPrograms.key(port: 11211, queues: 2, own: 0, offload: true)),
            ("tcp-flow", """
                RSS-style flow steering: Toeplitz over the 4-tuple, redirection table to the queue.
                What a NIC without FlexNIC does; the baseline for key steering.
                """, .receiveSideScaling()),
            ("reflect", """
                Send every IPv4 frame back where it came from: the reply action alone (swap MACs,
                addresses and ports, fix checksums). What `flexbench reflect` runs.
                """, .reflector),
            ("ids-symmetric", """
                Symmetric flow steering for an IDS (`flexids run --mode symmetric`, 4 instances):
                addresses (IPv4, or IPv6 as 128-bit numbers) and ports each sorted before the
                Toeplitz hash, so both directions of a connection meet on one instance.
                """, IDSSteering.hashProgram(instances: 4, symmetricSort: true)),
            ("storm-dccp-receive", """
                FlexStorm's receive path (thesis 5.2.1, fig. 5.4) for a node serving DCCP port 7100
                in UDP whose local senders use ports 7101-7104: checksum, connection registers,
                in-order check, place the tuple by worker id or withhold the ack, the Ack back.
                """, DCCPReceiver.program(port: 7100, udpEncapsulated: true, acks: AckBoard(basePort: 7101, count: 4),
                                          connections: 256, targetOffset: 0)),
        ]
    }

    func run() throws {
        var stale: [String] = []
        for (name, comment, program) in Self.shipped {
            let path = "\(out)/\(name).toml"
            let text = try ProgramFile.write(program, comment: comment)
            if check {
                let file = FileManager.default.contents(atPath: path).map { String(decoding: $0, as: UTF8.self) }
                if file != text { stale.append(path) }
            } else {
                guard FileManager.default.createFile(atPath: path, contents: Data(text.utf8)) else { throw RuntimeFailure("\(path): cannot write") }
                print("wrote \(path)")
            }
        }
        if !stale.isEmpty {
            throw RuntimeFailure("differ from the programs the code builds (run `flexbench programs`): \(stale.joined(separator: ", "))")
        }
    }
}
