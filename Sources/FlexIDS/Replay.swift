import CFlexSys
import FlexIO
import FlexNIC
import Foundation

/// Replays part of a trace through a FlexNIC steering program to N instance threads,
/// each with its own `Inspector` (thesis 6.2.4). The dispatcher plays the NIC: it runs
/// the program on each frame and hands the record's index to the chosen instance's
/// SPSC ring, in batches, and wakes it. A full ring makes the dispatcher wait (a replay
/// loses nothing), and the waits are counted. Instances run `CoreLoop`s: an idle one
/// sleeps until woken, so that on a machine with fewer cores than threads the busy
/// instances get the cores; a waiting dispatcher naps.
public final class Replay {
    public struct Result: Sendable {
        public var instances: [Inspector.Counters]
        /// Packets steered to each instance.
        public var steered: [Int]
        /// Frames the program sent to the slow path (malformed headers): not inspected.
        public var slowPath: Int
        /// Times the dispatcher found an instance's ring full and waited.
        public var dispatcherWaits: Int
        public var packets: Int
        public var bytes: Int
        public var seconds: Double
        /// All instances' alerts in packet order, after threshold filters.
        public var alerts: [Alert]
        /// Each instance's record indices, when asked for (to write per-instance traces).
        public var shares: [[Int]]?

        public var packetsPerSecond: Double { Double(packets) / max(seconds, 1e-9) }
        public var megabitsPerSecond: Double { Double(bytes) * 8 / 1e6 / max(seconds, 1e-9) }
    }

    let engine: DetectionEngine
    let trace: Trace
    let records: Range<Int>
    let pipeline: SteeringPipeline
    let instances: Int
    let flowCapacity: Int
    /// One member per instance: it sleeps on it when its ring is empty, and the
    /// dispatcher signals it once per batch it hands over.
    let wakeups: WakeSet

    static let batch = 32
    static let ringCapacity = 4096
    static let endOfTrace: Int32 = -1

    public init(engine: DetectionEngine, trace: Trace, records: Range<Int>, program: SteeringProgram, flowCapacity: Int = 1 << 16) throws {
        self.engine = engine
        self.trace = trace
        self.records = records
        self.instances = program.queues
        self.flowCapacity = flowCapacity
        pipeline = try SteeringPipeline(program: program)
        wakeups = try WakeSet(count: program.queues)
    }

    /// Where each record goes (-1: slow path), without inspecting: the steering alone.
    public func steer() -> [Int] { records.map(instance(for:)) }

    /// The instance the program sends record `i` to; -1: the slow path.
    @inline(__always)
    func instance(for i: Int) -> Int {
        let f = trace.frame(i)
        var p = Packet(owner: nil, data: f.baseAddress!, length: UInt32(f.count), capacity: UInt32(f.count))
        let v = pipeline.steer(&p)
        return v.kind == .queue && v.queue >= 0 && Int(v.queue) < instances ? Int(v.queue) : -1
    }

    public func run(keepShares: Bool = false) -> Result {
        let rings = (0..<instances).map { _ in SPSCRing<Int32>(capacity: Self.ringCapacity) }
        let inspectors = (0..<instances).map { _ in Inspector(engine: engine, flowCapacity: flowCapacity) }
        let done = DispatchGroup()
        for q in 0..<instances {
            done.enter()
            let ring = rings[q], inspector = inspectors[q], trace = trace, instances = instances, wakeups = wakeups
            let thread = Thread {
                let buffer = UnsafeMutablePointer<Int32>.allocate(capacity: Self.batch)
                defer { buffer.deallocate(); done.leave() }
                // Instances may outnumber cores: an idle one spins only with a core spare.
                let loop = CoreLoop(wakeups: wakeups, member: q, spinCycles: CoreLoop.spinCycles(threads: instances + 1))
                var ended = false
                loop.run(while: { !ended }) {
                    let n = ring.dequeue(into: buffer, maximum: Self.batch)
                    for k in 0..<n {
                        if buffer[k] < 0 {
                            inspector.finish()  // what reassembly still holds
                            ended = true
                            break
                        }
                        inspector.inspect(trace, record: Int(buffer[k]))
                    }
                    return CoreLoop.Round(work: n)
                }
            }
            thread.name = "ids-\(q)"
            thread.stackSize = 8 << 20
            thread.start()
        }

        let start = DispatchTime.now().uptimeNanoseconds
        var staged = [[Int32]](repeating: [], count: instances)
        for q in 0..<instances { staged[q].reserveCapacity(Self.batch) }
        var steered = [Int](repeating: 0, count: instances)
        var shares: [[Int]]? = keepShares ? Array(repeating: [], count: instances) : nil
        var slowPath = 0, waits = 0, bytes = 0
        func flush(_ q: Int) {
            staged[q].withUnsafeBufferPointer { b in
                var sent = 0
                while sent < b.count {
                    let n = rings[q].enqueue(b.baseAddress! + sent, count: b.count - sent)
                    sent += n
                    if sent < b.count { waits += 1; usleep(20) }
                }
            }
            wakeups.wake(q)
            staged[q].removeAll(keepingCapacity: true)
        }
        for i in records {
            bytes += trace.records[i].length
            let q = instance(for: i)
            guard q >= 0 else { slowPath += 1; continue }
            steered[q] += 1
            shares?[q].append(i)
            staged[q].append(Int32(i))
            if staged[q].count == Self.batch { flush(q) }
        }
        for q in 0..<instances {
            staged[q].append(Self.endOfTrace)
            flush(q)
        }
        done.wait()
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        let alerts = ThresholdFilter.apply(inspectors.flatMap { $0.takeAlerts() }, rules: engine.rules)
        return Result(instances: inspectors.map(\.counters), steered: steered, slowPath: slowPath, dispatcherWaits: waits,
                      packets: records.count, bytes: bytes, seconds: seconds, alerts: alerts, shares: shares)
    }
}
