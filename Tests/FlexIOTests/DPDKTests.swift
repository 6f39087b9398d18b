import CDPDK
import FlexIO
import FlexNIC
import FlexTestSupport
import FlexWire
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// EAL can be initialised once per process: every DPDK test shares this one, with a
/// net_ring loopback, a net_memif server and a net_pcap replay port.
enum TestEAL {
    static let tag = "flextest\(getpid())"
    static let memifSocket = "/tmp/\(tag)-memif.sock"
    static let pcapIn = "/tmp/\(tag)-in.pcap"
    static let pcapOut = "/tmp/\(tag)-out.pcap"
    static let pcapFrames = (0..<25).map { Frames.udp(Array("replayed \($0)".utf8)) }

    /// CPUs the thread that initialised EAL may run on, before and after.
    nonisolated(unsafe) static var cpus = (before: 0, after: 0)

    static let setUp: Result<Void, PortError> = {
        do {
            let w = try PcapWriter(path: pcapIn)
            pcapFrames.forEach { w.write($0) }
            w.flush()
            unlink(memifSocket)
            cpus.before = Int(cdpdk_thread_cpu_count())
            defer { cpus.after = Int(cdpdk_thread_cpu_count()) }
            try DPDKEnvironment.initialize(arguments: [
                "--no-huge", "--no-pci", "-m", "256", "--file-prefix=\(tag)", "--log-level=3",
                "--vdev=net_ring0",
                "--vdev=net_memif0,role=server,socket=\(memifSocket),socket-abstract=no",
                "--vdev=net_pcap0,rx_pcap=\(pcapIn),tx_pcap=\(pcapOut)",
            ])
            return .success(())
        } catch {
            return .failure(PortError("\(error)"))
        }
    }()

    static func ready() throws { try setUp.get() }

    /// net_ring0, opened once and shared (a closed vdev cannot be reopened).
    static let ring: Result<DPDKPort, PortError> = {
        do {
            try ready()
            return .success(try DPDKPort(device: "net_ring0"))
        } catch { return .failure(PortError("\(error)")) }
    }()
}

/// The `flexbench` built beside the test bundle.
func flexbenchPath() throws -> String { try builtExecutable("flexbench") }

/// Sends `frames` on `port` and collects what comes back within `timeout`.
func roundTrip(_ port: DPDKPort, _ frames: [[UInt8]], timeout: TimeInterval = 10) -> [[UInt8]] {
    let out = PacketBatch(capacity: 32)
    let inbox = PacketBatch(capacity: 32)
    var received: [[UInt8]] = []
    var next = 0
    let deadline = Date().addingTimeInterval(timeout)
    while received.count < frames.count && Date() < deadline {
        if next < frames.count && out.isEmpty {
            let n = min(32, frames.count - next)
            if port.allocate(count: n, into: out) == n {
                for i in 0..<n {
                    var p = out[i]
                    UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)).copyBytes(from: frames[next + i])
                    p.length = UInt32(frames[next + i].count)
                    out[i] = p
                }
                next += n
            }
        }
        if !out.isEmpty { _ = port.transmit(queue: 0, out) }
        if port.receive(queue: 0, into: inbox) == 0 { usleep(100) }
        received += (0..<inbox.count).map { inbox[$0].byteArray }
        port.release(inbox)
    }
    port.release(out)
    return received
}

@Suite(.serialized, .tags(.integration)) struct DPDKIntegrationTests {
    /// EAL pins the thread that initialises it to one core; threads the servers start
    /// afterwards would inherit that and share it. The shim restores the affinity.
    @Test func ealLeavesTheCallersCPUAffinityAlone() throws {
        try TestEAL.ready()
        #expect(TestEAL.cpus.before >= 1)
        #expect(TestEAL.cpus.after == TestEAL.cpus.before)
    }

    /// net_ring0 transmits into its own receive ring: frames come back byte for byte.
    @Test func netRingRoundTripInProcess() throws {
        let port = try TestEAL.ring.get()
        let frames = (0..<200).map { Frames.udp(Array("ring frame \($0)".utf8)) }
        let back = roundTrip(port, frames)
        #expect(back == frames)
        #expect(port.statistics.transmittedPackets >= 200)
    }

    /// The steering pipeline runs unchanged over a DPDK port: reflect over net_ring0.
    @Test func pipelineOverNetRing() throws {
        let port = try TestEAL.ring.get()
        let frame = Frames.udp(Array("steer me".utf8))
        let out = PacketBatch(capacity: 1)
        #expect(port.allocate(count: 1, into: out) == 1)
        var p = out[0]
        UnsafeMutableRawBufferPointer(start: p.data, count: Int(p.capacity)).copyBytes(from: frame)
        p.length = UInt32(frame.count)
        out[0] = p
        #expect(port.transmit(queue: 0, out) == 1)
        let pipeline = try SteeringPipeline(program: SteeringProgram(name: "q", queues: 1, stages: [
            .init("all", actions: [.hash(.fourTuple), .writeHash, .strip(.l4), .toQueue(0)]),
        ]))
        let emulator = SteeringEmulator(port: port, pipeline: pipeline)
        var tries = 0
        while emulator.poll() == 0 && tries < 1000 { tries += 1; usleep(100) }
        let d = try #require(pipeline.rings[0].dequeue())
        #expect(Array(UnsafeRawBufferPointer(d.payload)) == Array("steer me".utf8))
        #expect(d.hash == ToeplitzHash().hash(source: IPv4Address(10, 0, 0, 1).value, destination: IPv4Address(10, 0, 0, 2).value,
                                              sourcePort: 40000, destinationPort: 11211))
        port.release(d.packet)
    }

    /// net_pcap0 replays a capture file as a port and records what it sends.
    @Test func netPcapReplaysAndRecords() throws {
        try TestEAL.ready()
        let port = try DPDKPort(device: "net_pcap0")
        let batch = PacketBatch(capacity: 32)
        var got: [[UInt8]] = []
        let deadline = Date().addingTimeInterval(5)
        while got.count < TestEAL.pcapFrames.count && Date() < deadline {
            if port.receive(queue: 0, into: batch) == 0 { usleep(100); continue }
            got += (0..<batch.count).map { batch[$0].byteArray }
            while !batch.isEmpty { _ = port.transmit(queue: 0, batch) }
        }
        port.stop()  // flushes tx_pcap
        #expect(got == TestEAL.pcapFrames)
        let r = try PcapReader(path: TestEAL.pcapOut)
        var written: [[UInt8]] = []
        while let rec = try r.next() { written.append(Array(rec.bytes)) }
        #expect(written == TestEAL.pcapFrames)
    }

    /// Kernel bypass between two processes: this process is the memif server, a
    /// `flexbench reflect` child the client; frames come back reflected.
    @Test func netMemifBetweenTwoProcesses() throws {
        try TestEAL.ready()
        let bench = try flexbenchPath()
        let port = try DPDKPort(device: "net_memif0")
        defer { port.stop() }
        let count = 300
        let child = try ChildProcess(bench, [
            "reflect", "--dpdk-device", "net_memif0", "--count", "\(count)", "--duration", "30", "--eal",
            "--no-huge --no-pci -m 256 --file-prefix=\(TestEAL.tag)c --log-level=3 "
                + "--vdev=net_memif0,role=client,socket=\(TestEAL.memifSocket),socket-abstract=no",
        ])
        defer { child.stop() }
        #expect(port.waitForLink(timeoutMilliseconds: 15_000), "memif link never came up")
        let frames = (0..<count).map { Frames.udp(Array("memif \($0)".utf8)) }
        let back = roundTrip(port, frames, timeout: 20)
        #expect(back.count == count)
        for (sent, echoed) in zip(frames, back) {
            let f = try Frames.parse(echoed)  // checksums verified
            #expect(f.sourcePort == 11211 && f.destinationPort == 40000)
            #expect(Array(echoed[42...]) == Array(sent[42...]))
        }
        #expect(child.waitForExit(timeout: 30) == 0, "\(child.output)")
        #expect(child.output.contains("reflected \(count)"), "\(child.output)")
    }

    /// net_af_packet on a veth in a network namespace: a kernel UDP client in one
    /// namespace pings through the DPDK reflector in another.
    @Test func netAfPacketOnVethBetweenNamespaces() throws {
        guard canMakeNamespaces else {
            Issue.record("needs root and iproute2 (CI has both)")
            return
        }
        let bench = try flexbenchPath()
        let id = getpid() % 100_000
        let nsA = "flexA\(id)", nsB = "flexB\(id)", va = "fva\(id)", vb = "fvb\(id)"
        defer { _ = try? ip("netns del \(nsA)"); _ = try? ip("netns del \(nsB)") }
        _ = try ip("netns add \(nsA)")
        _ = try ip("netns add \(nsB)")
        _ = try ip("link add \(va) type veth peer name \(vb)")
        _ = try ip("link set \(va) netns \(nsA)")
        _ = try ip("link set \(vb) netns \(nsB)")
        _ = try ip("-n \(nsA) addr add 198.18.0.1/24 dev \(va)")
        _ = try ip("-n \(nsA) link set \(va) up")
        _ = try ip("-n \(nsB) link set \(vb) up")
        let show = try ip("-n \(nsB) -o link show \(vb)")
        let mac = try #require(show.split(separator: " ").drop { $0 != "link/ether" }.dropFirst().first)
        _ = try ip("-n \(nsA) neigh add 198.18.0.2 lladdr \(mac) dev \(va)")

        let reflector = try ChildProcess("/usr/sbin/ip", [
            "netns", "exec", nsB, bench, "reflect", "--dpdk-device", "net_af_packet0", "--count", "50", "--duration", "30",
            "--eal", "--no-huge --no-pci -m 256 --file-prefix=\(TestEAL.tag)af --log-level=3 --vdev=net_af_packet0,iface=\(vb)",
        ])
        defer { reflector.stop() }
        // Wait for the reflector to be up (it prints one line), then ping through it.
        #expect(reflector.waitForOutput("reflect: dpdk:net_af_packet0", timeout: 15), "\(reflector.output)")
        let (rc, out) = try runProcess("/usr/sbin/ip", ["netns", "exec", nsA, bench, "udp-ping", "--target", "198.18.0.2:9000", "--count", "50"], timeout: 30)
        #expect(rc == 0, "\(out)")
        #expect(out.contains("sent 50 received 50"), "\(out)")
        #expect(reflector.waitForExit(timeout: 30) == 0, "\(reflector.output)")
    }
}
