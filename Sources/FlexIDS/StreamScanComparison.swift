import CFlexSys
import FlexWire

/// Hyperscan's block mode against its streaming mode for the fast patterns of one TCP
/// port group, over a trace's client data to that port: what flexids does (each segment
/// scanned, then, on a port its stream reassembly serves, a PDU of two or more segments
/// scanned whole again, as it flushes them at the server's answer and at the end)
/// against one stream per flow fed each segment once in order. Only the scans are timed (TSC cycles); the
/// stream state is per open flow.
///
/// Segments are taken in capture order (the generated trace has them in order); a FIN
/// or RST from either side ends a flow.
public struct StreamScanComparison {
    public struct Result {
        public var group = ""
        public var patterns = 0
        public var flows = 0
        public var mostOpenFlows = 0
        public var segments = 0
        public var payloadBytes = 0
        /// Block mode: bytes scanned (segments and PDUs again), cycles, pattern hits.
        public var blockBytes = 0
        public var blockCycles: UInt64 = 0
        public var blockHits = 0
        public var streamCycles: UInt64 = 0
        public var streamHits = 0
        public var streamStateBytes = 0
        public var blockDatabaseBytes = 0
        public var streamDatabaseBytes = 0
    }

    /// Nil if no TCP group serves `port` with fast patterns, or Hyperscan is unavailable.
    public static func run(engine: DetectionEngine, trace: Trace, port: UInt16) -> Result? {
        let candidates = engine.groups.filter { $0.proto == .tcp && $0.kind == .destination && $0.ports.contains(port) }
        guard let group = candidates.max(by: { $0.rules.count < $1.rules.count }) else { return nil }
        var seen = Set<[UInt8]>()
        let patterns = group.rules.compactMap { engine.rules[Int($0)].fastPattern?.bytes.map { MultiPatternMatcher.fold[Int($0)] } }
            .filter { seen.insert($0).inserted }
        guard !patterns.isEmpty, let block = HyperscanDatabase(patterns: patterns),
              let streaming = HyperscanDatabase(patterns: patterns, streaming: true) else { return nil }
        let scratch = HyperscanScratch(for: [block, streaming])
        var r = Result(group: group.name, patterns: patterns.count, streamStateBytes: streaming.streamStateSize,
                       blockDatabaseBytes: block.memoryFootprint, streamDatabaseBytes: streaming.memoryFootprint)

        struct Flow {
            var stream: HyperscanStream?
            var pdu: [UInt8] = []
            var pduSegments = 0
        }
        var flows: [PacketAddresses: [UInt32: Flow]] = [:]  // by addresses, then ports
        var open = 0
        func key(_ f: ParsedFrame, _ a: PacketAddresses, toServer: Bool) -> (PacketAddresses, UInt32) {
            toServer ? (a, UInt32(f.sourcePort) << 16 | UInt32(f.destinationPort))
                     : (PacketAddresses(source: a.destination, destination: a.source), UInt32(f.destinationPort) << 16 | UInt32(f.sourcePort))
        }
        let reassembles = StreamReassembler.clientPorts.contains(port)
        func flushPDU(_ flow: inout Flow) {
            defer { flow.pdu.removeAll(keepingCapacity: true); flow.pduSegments = 0 }
            guard reassembles && flow.pduSegments >= 2 else { return }
            flow.pdu.withUnsafeBytes { b in
                let t0 = cflex_rdtsc()
                r.blockHits += block.scan(b, scratch)
                r.blockCycles &+= cflex_rdtsc() &- t0
            }
            r.blockBytes += flow.pdu.count
        }
        func end(_ flow: inout Flow) {
            flushPDU(&flow)
            guard let s = flow.stream else { return }
            let t0 = cflex_rdtsc()
            r.streamHits += s.close(scratch)
            r.streamCycles &+= cflex_rdtsc() &- t0
            open -= 1
        }
        for i in 0..<trace.records.count {
            let frame = trace.frame(i)
            guard let f = try? ParsedFrame(parsing: frame), f.layers.contains(.tcp) else { continue }
            let toServer = f.destinationPort == port
            guard toServer || f.sourcePort == port else { continue }
            let addresses = PacketAddresses(f, UnsafeRawPointer(frame.baseAddress!))
            let (a, ports) = key(f, addresses, toServer: toServer)
            let ends = f.tcpFlags & 0x05 != 0  // FIN or RST
            var flow = flows[a]?[ports] ?? Flow()
            if toServer && f.payloadLength > 0 {
                let payload = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(frame)[Int(f.payloadOffset)..<(Int(f.payloadOffset) + Int(f.payloadLength))])
                r.segments += 1
                r.payloadBytes += payload.count
                var t0 = cflex_rdtsc()
                r.blockHits += block.scan(payload, scratch)
                r.blockCycles &+= cflex_rdtsc() &- t0
                r.blockBytes += payload.count
                flow.pdu += payload
                flow.pduSegments += 1
                if flow.pdu.count >= 16 << 10 { flushPDU(&flow) }  // as the reassembler's 16 KiB flush
                if flow.stream == nil {
                    t0 = cflex_rdtsc()
                    flow.stream = HyperscanStream(streaming)
                    r.streamCycles &+= cflex_rdtsc() &- t0
                    if flow.stream != nil { open += 1; r.flows += 1; r.mostOpenFlows = max(r.mostOpenFlows, open) }
                }
                t0 = cflex_rdtsc()
                r.streamHits += flow.stream?.scan(payload, scratch) ?? 0
                r.streamCycles &+= cflex_rdtsc() &- t0
            } else if !toServer {
                flushPDU(&flow)  // the server answered
            }
            if ends {
                end(&flow)
                flows[a]?[ports] = nil
            } else {
                flows[a, default: [:]][ports] = flow
            }
        }
        for (_, byPorts) in flows {
            for (_, var flow) in byPorts { end(&flow) }
        }
        return r
    }
}
