@testable import FlexIDS
import FlexIO
import FlexTestSupport
import FlexWire
import Foundation
import Testing

/// `flexids stream-scan`'s comparison on a flow whose request is split between two
/// segments: block mode finds the pattern only when it scans the PDU again, streaming
/// mode in the stream, each byte once.
@Suite struct StreamScanComparisonTests {
    @Test(.enabled(if: HyperscanDatabase.isAvailable, "needs Hyperscan"))
    func aPatternSplitBetweenSegmentsIsFoundBothWays() throws {
        let engine = try Make.engine(#"alert tcp any any -> any 80 (msg:"split"; content:"evilpattern"; sid:1;)"#)
        let server = FrameBuilder.Endpoints(source: Make.client.destination, destination: Make.client.source,
                                            sourcePort: 80, destinationPort: 40000)
        func segment(_ text: String, _ e: FrameBuilder.Endpoints, seq: UInt32, flags: TCPHeader.Flags = [.ack, .psh]) -> [UInt8] {
            try! Frames.build { try FrameBuilder.tcp(into: $0, endpoints: e, payload: Array(text.utf8), flags: flags, sequence: seq) }
        }
        let path = NSTemporaryDirectory() + "stream-scan-\(getpid()).pcap"
        defer { unlink(path) }
        let writer = try PcapWriter(path: path)
        for (i, f) in [segment("GET /evilpa", Make.client, seq: 1), segment("ttern HTTP/1.1\r\n\r\n", Make.client, seq: 12),
                       segment("HTTP/1.1 200 OK\r\n\r\n", server, seq: 1), segment("", Make.client, seq: 31, flags: [.fin, .ack])].enumerated() {
            writer.write(f, timestampNanoseconds: UInt64(i))
        }
        writer.flush()
        let r = try #require(StreamScanComparison.run(engine: engine, trace: Trace(path: path), port: 80))
        #expect(r.segments == 2 && r.flows == 1 && r.patterns == 1)
        #expect(r.blockBytes == 2 * r.payloadBytes, "each segment, then the PDU again")
        #expect(r.blockHits == 1, "found only in the PDU")
        #expect(r.streamHits == 1, "found across the segments")
        #expect(r.streamStateBytes > 0)
    }
}
