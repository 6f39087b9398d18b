import ArgumentParser
import FlexCLI
import FlexIO
import FlexNIC
import FlexWire
import Foundation

/// A DPDK reflector: every IPv4 UDP/TCP/DCCP frame goes back with Ethernet, IP
/// addresses and ports swapped and checksums fixed, built by the steering pipeline's
/// reply action. Peer for port tests (net_memif, net_af_packet) and latency probes.
struct Reflect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Reflect frames on a DPDK port with the pipeline's reply action.",
        discussion: """
            Example (two processes over shared memory): \
            flexbench reflect --eal "--no-huge --no-pci -m 256 --file-prefix=r1 \
            --vdev=net_memif0,role=server,socket=/tmp/m.sock,socket-abstract=no" --dpdk-device net_memif0
            """)

    @OptionGroup var dpdk: DPDKOptions
    @Option(help: "Stop after reflecting this many frames (0: never).") var count = 0
    @Option(name: .duration, help: "Stop after this many seconds (0: never).") var seconds = 0.0

    func run() throws {
        let port = try dpdk.openPort()
        defer { port.stop() }
        let pipeline = try SteeringPipeline(program: .reflector)
        let emulator = SteeringEmulator(port: port, pipeline: pipeline)
        let drain = UnsafeMutablePointer<Descriptor>.allocate(capacity: 64)
        defer { drain.deallocate() }
        let deadline = seconds > 0 ? Date().addingTimeInterval(seconds) : .distantFuture
        print("reflect: \(port.name) driver \(port.driverName), link \(port.isLinkUp ? "up" : "down")")
        fflush(stdout)
        CoreLoop(ports: [(port, 0)]).run(while: { (count == 0 || pipeline.counters.snapshot.replied < UInt64(count)) && Date() < deadline }) {
            let reflected = emulator.poll()
            // Frames nobody reflects (ARP, IPv6, malformed) leave by the slow path: free them.
            let n = pipeline.slowPathRing.dequeue(into: drain, maximum: 64)
            for i in 0..<n { port.release(drain[i].packet) }
            return CoreLoop.Round(work: reflected + n)
        }
        let c = pipeline.counters.snapshot
        print("reflect: reflected \(c.replied), slow path \(c.slowPathTotal), port \(port.statistics)")
    }
}
