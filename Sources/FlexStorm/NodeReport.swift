import FlexIO
import FlexNIC
import Foundation

/// What a node did: tuples per second, the per-tuple latency split (thesis tables
/// 6.2/6.4), drops by reason and the transport's counters.
public struct NodeReport: Sendable {
    public var node: String
    public var mode: StormNode.Mode
    public var seconds: Double
    public var workers: [WorkerStats.Snapshot]
    public var receive: [(name: String, value: UInt64)]
    public var senders: DCCPSender.Counters
    /// Tuples for a worker id the config does not have.
    public var unknownDestination: UInt64
    /// Tuples bolts dropped because their output backlog was full.
    public var outputOverflow: UInt64
    /// Frames for the node itself that found its loopback ring full (sent again by
    /// their senders).
    public var loopbackOverflow: UInt64
    /// Times a transmit queue stayed full through every try (the frames waited).
    public var transmitBusy: UInt64
    public var portStatistics: PortStatistics

    /// Tuples the node's workers took from their input queues.
    public var processed: UInt64 { workers.reduce(0) { $0 + $1.processed } }
    public var emitted: UInt64 { workers.reduce(0) { $0 + $1.emitted } }
    public var tuplesPerSecond: Double { seconds > 0 ? Double(processed) / seconds : 0 }
    /// From the first tuple any worker here took to the last, in seconds: the node's
    /// working time, without start-up (link up, peers starting) or waiting at the end.
    public var activeSeconds: Double {
        let w = workers.filter { $0.processed > 0 }
        guard let first = w.map(\.firstTupleAt).min(), let last = w.map(\.lastTupleAt).max(), last > first else { return 0 }
        return Double(last - first) / 1e9
    }
    public var activeTuplesPerSecond: Double { activeSeconds > 0 ? Double(processed) / activeSeconds : 0 }

    /// Mean nanoseconds per tuple of each part, over every tuple the node took in.
    public var latency: Latency {
        let n = Double(max(processed, 1))
        func mean(_ k: KeyPath<WorkerStats.Snapshot, UInt64>) -> Double { Double(workers.reduce(0) { $0 + $1[keyPath: k] }) / n }
        return Latency(input: mean(\.inputNs), processing: mean(\.processingNs), output: mean(\.outputNs), network: mean(\.networkNs))
    }

    public struct Latency: Sendable {
        public var input: Double, processing: Double, output: Double, network: Double
        public init(input: Double, processing: Double, output: Double, network: Double) {
            self.input = input
            self.processing = processing
            self.output = output
            self.network = network
        }
        public var total: Double { input + processing + output + network }
        /// Sums of several nodes' latencies, weighted by the tuples each took in.
        public static func weighted(_ reports: [NodeReport]) -> Latency {
            let n = Double(max(reports.reduce(0) { $0 + $1.processed }, 1))
            func sum(_ k: KeyPath<WorkerStats.Snapshot, UInt64>) -> Double {
                Double(reports.reduce(0) { $0 + $1.workers.reduce(0) { $0 + $1[keyPath: k] } }) / n
            }
            return Latency(input: sum(\.inputNs), processing: sum(\.processingNs), output: sum(\.outputNs), network: sum(\.networkNs))
        }
    }

    /// Tuples dropped, by reason (at-most-once): a destination down (refused, or in
    /// flight when it went down and the connection started over), an unknown worker id,
    /// and what the receive pipeline refused.
    public var drops: [(String, UInt64)] {
        [("destination_down", senders.refusedWhileDown), ("lost_in_flight", senders.lostInFlight), ("unknown_destination", unknownDestination),
         ("output_overflow", outputOverflow)]
            + receive.filter { ["unknown_target", "malformed", "bad_checksum", "connection_table_full"].contains($0.name) }
                .map { ($0.name, $0.value) }
    }

    public var text: String {
        let l = latency
        var s = "node \(node) (\(mode.rawValue)): " + String(format: "%.0f tuples/s, %llu processed, %llu emitted in %.2f s (active %.2f s: %.0f tuples/s)\n",
                       tuplesPerSecond, processed, emitted, seconds, activeSeconds, activeTuplesPerSecond)
        s += String(format: "  latency per tuple (mean): input %@, processing %@, output %@, network %@, total %@\n",
                    Self.format(l.input), Self.format(l.processing), Self.format(l.output), Self.format(l.network), Self.format(l.total))
        for role in StormConfig.Role.allCases {
            let w = workers.filter { $0.role == role && $0.processed > 0 }
            let n = Double(w.reduce(0) { $0 + $1.processed })
            guard n > 0 else { continue }
            func m(_ k: KeyPath<WorkerStats.Snapshot, UInt64>) -> String { Self.format(Double(w.reduce(0) { $0 + $1[keyPath: k] }) / n) }
            s += "    \(role) (\(Int(n)) tuples in): input \(m(\.inputNs)), processing \(m(\.processingNs)), output \(m(\.outputNs)), network \(m(\.networkNs))\n"
        }
        s += "  drops: " + drops.map { "\($0.0) \($0.1)" }.joined(separator: ", ") + "\n"
        s += "  dccp: sent \(senders.sent), retransmitted \(senders.retransmitted) (\(senders.fastRetransmits) fast), window stalls \(senders.windowStalls), "
            + "peer down \(senders.timesDown)x; receive: "
            + receive.filter { $0.value > 0 }.map { "\($0.name) \($0.value)" }.joined(separator: ", ")
        s += "\n  port: \(portStatistics), transmit queue full \(transmitBusy)x, loopback overflow \(loopbackOverflow)"
        return s
    }

    public var json: String {
        let l = latency
        let fields: [String] = [
            "\"node\":\"\(node)\"", "\"mode\":\"\(mode.rawValue)\"", String(format: "\"seconds\":%.3f", seconds), String(format: "\"active_seconds\":%.3f", activeSeconds),
            "\"first_tuple_ns\":\(workers.filter { $0.processed > 0 }.map(\.firstTupleAt).min() ?? 0)",
            "\"last_tuple_ns\":\(workers.map(\.lastTupleAt).max() ?? 0)",
            "\"processed\":\(processed)", "\"emitted\":\(emitted)", String(format: "\"tuples_per_second\":%.1f", tuplesPerSecond),
            String(format: "\"latency_ns\":{\"input\":%.0f,\"processing\":%.0f,\"output\":%.0f,\"network\":%.0f,\"total\":%.0f}",
                   l.input, l.processing, l.output, l.network, l.total),
            "\"drops\":{" + drops.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}",
            "\"dccp\":{\"sent\":\(senders.sent),\"retransmitted\":\(senders.retransmitted),\"fast_retransmits\":\(senders.fastRetransmits),\"window_stalls\":\(senders.windowStalls),"
                + "\"peer_down\":\(senders.timesDown)," + receive.map { "\"\($0.name)\":\($0.value)" }.joined(separator: ",") + "}",
        ]
        return "{" + fields.joined(separator: ",") + "}"
    }

    /// "812 ns", "3.4 us", "10.2 ms".
    public static func format(_ ns: Double) -> String {
        if ns < 1_000 { return String(format: "%.0f ns", ns) }
        if ns < 1_000_000 { return String(format: "%.2f us", ns / 1_000) }
        return String(format: "%.2f ms", ns / 1_000_000)
    }
}

extension Ranking {
    /// "top 3 at 12.0 s: alice 40, bob 31, carol 30".
    public func text(since start: UInt64) -> String {
        let at = Double(time &- min(start, time)) / 1e9
        return String(format: "%@top %d at %.1f s: ", isFinal ? "final " : "", entries.count, at)
            + entries.map(\.description).joined(separator: ", ")
    }

    /// One JSON line.
    public func json(since start: UInt64) -> String {
        let list = entries.map { "{\"user\":\"\($0.user)\",\"count\":\($0.count)}" }.joined(separator: ",")
        return String(format: "{\"time_s\":%.3f,\"final\":%@,\"top\":[", Double(time &- min(start, time)) / 1e9,
                      isFinal ? "true" : "false") + list + "]}"
    }
}
