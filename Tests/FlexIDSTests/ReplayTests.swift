@testable import FlexIDS
import FlexIO
import FlexConfig
import FlexNIC
import FlexTestSupport
import FlexWire
import Foundation
import Testing

/// A fresh directory for one test's files (the caller removes it).
func temporaryDirectory() throws -> String {
    let dir = NSTemporaryDirectory() + "flexids-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

/// The shipped trace and sample rules, end to end: steering modes, instances, link
/// types and damaged captures.
@Suite struct ReplayTests {
    static let trace = "Traces/ids-mix.pcap"

    static func sampleEngine() throws -> DetectionEngine {
        let v = try RuleVariables.load(path: "Configs/ids/snort-vars.conf")
        let set = try RuleSet.load(paths: ["Configs/ids/flex-sample.rules"], variables: v)
        guard set.skipped.isEmpty else { throw TestSetupError("sample rules skipped: \(set.skipped)") }
        return DetectionEngine(rules: set.rules)
    }


    /// The alert set does not depend on the steering mode or the number of instances,
    /// every sample rule fires on the shipped trace, and nothing is dropped.
    @Test func alertsAreTheSameInEveryModeAndOnOneInstance() throws {
        let engine = try Self.sampleEngine()
        let trace = try Trace(path: Self.trace)
        #expect(trace.error == nil && trace.records.count > 5000)
        let all = 0..<trace.records.count
        let single = try Replay(engine: engine, trace: trace, records: all, program: IDSSteering.hashProgram(instances: 1, symmetricSort: false)).run()
        let fired = Set(single.alerts.map { engine.rules[Int($0.rule)].sid })
        #expect(fired == Set(engine.rules.map(\.sid)), "rules that never fired: \(Set(engine.rules.map(\.sid)).subtracting(fired).sorted())")

        let prefix = trace.records.count / 10
        let profile = Profile.measure(engine: engine, trace: trace, count: prefix, rules: [], prefix: 0.1)
        let partition = try ProgramFile.parse(ProgramFile.write(IDSSteering.partitionProgram(assignment: profile.partition(instances: 4).assignment,
                                                                                             instances: 4).program))
        for program in [IDSSteering.hashProgram(instances: 4, symmetricSort: false), IDSSteering.hashProgram(instances: 4, symmetricSort: true), partition] {
            let r = try Replay(engine: engine, trace: trace, records: all, program: program).run()
            #expect(r.alerts == single.alerts, "\(program.name): \(r.alerts.count) alerts, one instance \(single.alerts.count)")
            #expect(r.slowPath == 0 && r.instances.allSatisfy { $0.undecodable == 0 && $0.untrackedFlows == 0 })
            #expect(r.steered.reduce(0, +) == trace.records.count)
            #expect(r.steered.filter { $0 > 0 }.count == 4, "\(program.name) leaves an instance idle: \(r.steered)")
        }
    }

    /// The shipped trace with every TCP and UDP packet carried over IPv6 instead
    /// (2001:db8::/96 + the IPv4 address; checksums recomputed over the IPv6 pseudo-header).
    static func ipv6Twin(of trace: Trace, into path: String) throws {
        let writer = try PcapWriter(path: path)
        for i in trace.records.indices {
            guard let out = IPv6Frames.twin(of: trace.frame(i), prefix: [0x20, 0x01, 0x0d, 0xb8] + [UInt8](repeating: 0, count: 8)) else { continue }
            writer.write(out, timestampNanoseconds: trace.records[i].timestampNanoseconds)
        }
    }

    /// IPv6 flows are hashed (Toeplitz over their 128-bit addresses) over every
    /// instance, both directions together, so the alerts do not depend on the mode.
    @Test func ipv6AlertsAreTheSameInEveryMode() throws {
        let engine = try Self.sampleEngine()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.ipv6Twin(of: try Trace(path: Self.trace), into: "\(dir)/v6.pcap")
        let trace = try Trace(path: "\(dir)/v6.pcap")
        #expect(trace.records.count > 5000)
        let all = 0..<trace.records.count
        let single = try Replay(engine: engine, trace: trace, records: all, program: IDSSteering.hashProgram(instances: 1, symmetricSort: false)).run()
        #expect(single.alerts.count >= 20, "rules with `any` addresses fire on IPv6 too")
        #expect(single.instances[0].undecodable == 0 && single.instances[0].badChecksums == 0)
        for program in [IDSSteering.hashProgram(instances: 4, symmetricSort: false), IDSSteering.hashProgram(instances: 4, symmetricSort: true)] {
            let r = try Replay(engine: engine, trace: trace, records: all, program: program).run()
            #expect(r.alerts == single.alerts, "\(program.name): \(r.alerts.count) alerts, one instance \(single.alerts.count)")
            #expect(r.steered.filter { $0 > trace.records.count / 10 }.count == 4, "\(program.name) spreads IPv6 flows: \(r.steered)")
        }
    }

    /// Every mode keeps both directions of a flow together; partition steering sends
    /// each profiled flow group to the instance the partition chose.
    @Test func steeringKeepsFlowsTogetherAndFollowsThePartition() throws {
        let engine = try Self.sampleEngine()
        let trace = try Trace(path: Self.trace)
        let profile = Profile.measure(engine: engine, trace: trace, count: 1000, rules: [], prefix: 0.1)
        let (assignment, _) = profile.partition(instances: 3)
        let load = profile.partition(instances: 3, split: false, slack: 0).load
        #expect(load.max()! - load.min()! <= profile.entries[0].cycles, "greedy: imbalance at most the heaviest group")
        // Without splitting each flow group has one instance; with it, a group gets as
        // many instances as it has fair shares (all cycles / 3), rounded up.
        #expect(profile.partition(instances: 3, split: false).assignment.allSatisfy { $0.instances.count == 1 })
        for a in assignment { #expect(a.instances.count == min(3, max(1, Int((a.share * 3 - 1e-9).rounded(.up))))) }
        let program = try ProgramFile.parse(ProgramFile.write(IDSSteering.partitionProgram(assignment: assignment, instances: 3).program))
        let instancesOf = Dictionary(uniqueKeysWithValues: assignment.map { ($0.group, $0.instances) })
        for p in [IDSSteering.hashProgram(instances: 3, symmetricSort: false), IDSSteering.hashProgram(instances: 3, symmetricSort: true), program] {
            let targets = try Replay(engine: engine, trace: trace, records: 0..<trace.records.count, program: p).steer()
            var flowTarget: [String: Int] = [:]
            for (i, target) in targets.enumerated() {
                let f = try ParsedFrame(parsing: trace.frame(i))
                let ends = [("\(f.sourceAddress):\(f.sourcePort)"), ("\(f.destinationAddress):\(f.destinationPort)")].sorted()
                let key = "\(f.ipProtocol) \(ends)"
                #expect(flowTarget[key, default: target] == target, "\(p.name): flow \(key) split")
                flowTarget[key] = target
                if p.name == "ids-partition", let expected = instancesOf[engine.flowGroup(of: f)] {
                    #expect(expected.contains(target))
                }
            }
        }
    }

    /// Within the slack, a flow group joins the instance that already holds its big port
    /// groups; with no slack, the least loaded instance takes it.
    @Test func partitionPrefersInstancesHoldingTheSamePortGroups() {
        func entry(_ port: UInt16, _ groups: [String], _ cycles: UInt64) -> Profile.Entry {
            Profile.Entry(group: FlowGroup(proto: 6, low: 0, high: port), name: "tcp \(port)", portGroups: groups, packets: 1, bytes: 1, cycles: cycles)
        }
        let profile = Profile(rules: [], pcap: "", prefix: 0.1, packets: 4, entries: [
            entry(80, ["http", "any"], 100), entry(22, ["ssh", "any"], 90), entry(8080, ["http", "any"], 20), entry(25, ["smtp", "any"], 15),
        ], portGroupBytes: ["http": 1_000_000, "ssh": 1000, "smtp": 1000, "any": 5000])
        let affine = profile.partition(instances: 2, split: false, slack: 0.15).assignment
        #expect(affine.first { $0.group.high == 8080 }!.instances == [0], "8080 joins 80's instance (100 vs 90 is within the slack)")
        let plain = profile.partition(instances: 2, split: false, slack: 0).assignment
        #expect(plain.first { $0.group.high == 8080 }!.instances == [1], "plain greedy: the least loaded instance")
    }

    /// `spread` keeps each flow whole on one of its queues and uses them all.
    /// `Configs/steering/ids-symmetric.toml` is what `--mode symmetric` runs.
    @Test func theShippedSymmetricProgramIsWhatReplayRuns() throws {
        let file = try ProgramFile.load(path: "Configs/steering/ids-symmetric.toml")
        #expect(file == ProgramFile.canonical(IDSSteering.hashProgram(instances: 4, symmetricSort: true)))
    }

    @Test func spreadSharesAFlowGroupByFlow() throws {
        let engine = try Self.sampleEngine()
        let trace = try Trace(path: Self.trace)
        let program = try ProgramFile.parse("""
            name = "spread"
            queues = 4
            default = "queue 0"
            [[stage]]
            name = "udp 53"
            match = { ip_proto = 17, dst_port = 53 }
            actions = ["hash symmetric", "spread 1 3"]
            [[stage]]
            name = "udp 53 back"
            match = { ip_proto = 17, src_port = 53 }
            actions = ["hash symmetric", "spread 1 3"]
            """)
        let targets = try Replay(engine: engine, trace: trace, records: 0..<trace.records.count, program: program).steer()
        var used = Set<Int>(), flows: [String: Int] = [:]
        for (i, t) in targets.enumerated() {
            let f = try ParsedFrame(parsing: trace.frame(i))
            guard f.layers.contains(.udp), f.sourcePort == 53 || f.destinationPort == 53 else { continue }
            used.insert(t)
            let client = f.sourcePort == 53 ? "\(f.destinationAddress):\(f.destinationPort)" : "\(f.sourceAddress):\(f.sourcePort)"
            #expect(flows[client, default: t] == t)
            flows[client] = t
        }
        #expect(used == [1, 3] && flows.count > 50)
    }

    /// Linux cooked and raw IP captures, and VLAN-tagged Ethernet, give the alerts the
    /// plain Ethernet capture gives.
    @Test func linkTypesAndVLANTagsAreRead() throws {
        let engine = try Self.sampleEngine()
        let original = try Trace(path: Self.trace, limit: 3000)
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        func alerts(_ t: Trace) throws -> [Alert] {
            try Replay(engine: engine, trace: t, records: 0..<t.records.count, program: IDSSteering.hashProgram(instances: 1, symmetricSort: false)).run().alerts
        }
        let expected = try alerts(original)
        #expect(!expected.isEmpty)
        let variants: [(LinkType, String, ([UInt8]) -> [UInt8])] = [
            (.linuxCooked, "sll", { [0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0] + $0[12...] }),  // 14 bytes + ethertype + L3
            (.raw, "raw", { Array($0[14...]) }),
            (.ethernet, "vlan", { Array($0[0..<12]) + [0x81, 0x00, 0x00, 0x64] + $0[12...] }),
        ]
        for (link, name, convert) in variants {
            let path = "\(dir)/\(name).pcap"
            let writer = try PcapWriter(path: path, linkType: link)
            for i in 0..<original.records.count {
                writer.write(convert(Array(UnsafeRawBufferPointer(original.frame(i)))), timestampNanoseconds: original.records[i].timestampNanoseconds)
            }
            writer.flush()
            let t = try Trace(path: path)
            #expect(t.records.count == original.records.count && t.error == nil)
            #expect(try alerts(t) == expected, "\(name)")
        }
    }

    /// A capture cut mid-record keeps the packets before the cut and names the packet;
    /// garbage and unsupported link types are refused with the file named.
    @Test func damagedCapturesSayWhereAndKeepWhatCameBefore() throws {
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let bytes = try Data(contentsOf: URL(fileURLWithPath: Self.trace))
        let cut = "\(dir)/cut.pcap"
        try bytes.prefix(200_000).write(to: URL(fileURLWithPath: cut))
        let t = try Trace(path: cut)
        #expect(t.records.count > 100)
        #expect(t.error?.contains("packet \(t.records.count + 1)") == true, "\(String(describing: t.error))")

        let garbage = "\(dir)/garbage.pcap"
        try Data("this is not a capture file at all, just text".utf8).write(to: URL(fileURLWithPath: garbage))
        #expect(throws: PcapError.self) { try Trace(path: garbage) }

        // A valid pcap header with link type 147 (reserved for private use).
        var header: [UInt8] = [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 147, 0, 0, 0]
        header += [UInt8](repeating: 0, count: 16)
        let wifi = "\(dir)/wifi.pcap"
        try Data(header).write(to: URL(fileURLWithPath: wifi))
        do {
            _ = try Trace(path: wifi)
            Issue.record("link type 147 should be refused")
        } catch {
            #expect("\(error)".contains("link type 147 is not supported") && "\(error)".contains(wifi))
        }
    }

    /// Truncated and non-IP frames in a replay are counted, not inspected, and never crash.
    @Test func malformedFramesAreCounted() throws {
        let engine = try Self.sampleEngine()
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let good = Frames.udp(Array("FLEX-IP-MARKER".utf8))
        var badChecksum = good
        badChecksum[24] ^= 0xFF  // IPv4 header checksum
        let frames: [[UInt8]] = [Array(good.prefix(20)), Array(good.prefix(30)), [UInt8](repeating: 0xAB, count: 60), badChecksum, good,
                                 Array(Frames.tcp().prefix(40))]
        let path = "\(dir)/bad.pcap"
        let writer = try PcapWriter(path: path)
        for f in frames { writer.write(f) }
        writer.flush()
        let trace = try Trace(path: path)
        let r = try Replay(engine: engine, trace: trace, records: 0..<trace.records.count, program: IDSSteering.hashProgram(instances: 2, symmetricSort: false)).run()
        let inspected = r.instances.reduce(Inspector.Counters(), +)
        #expect(r.alerts.count == 1, "only the good frame's marker")
        #expect(r.slowPath + inspected.undecodable == 5, "slow path \(r.slowPath), undecodable \(inspected.undecodable)")
    }
}

/// The `flexids` command line: the whole workflow, and clear errors.
@Suite(.serialized, .tags(.integration)) struct FlexIDSCommandIntegrationTests {
    @Test func profilePartitionRunWorkflow() throws {
        let flexids = try builtExecutable("flexids")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rules = ["--rules", "Configs/ids/flex-sample.rules", "--vars", "Configs/ids/snort-vars.conf"]
        var (rc, out) = try runProcess(flexids, ["profile"] + rules + ["--pcap", ReplayTests.trace, "--prefix", "0.1", "--out", "\(dir)/p.json"])
        #expect(rc == 0 && out.contains("flow groups"), "\(out)")
        (rc, out) = try runProcess(flexids, ["partition", "--profile", "\(dir)/p.json", "--instances", "2", "--out", "\(dir)/s.toml"])
        #expect(rc == 0 && out.contains("instance 1"), "\(out)")
        var fast: [String: String] = [:]
        for mode in ["hash", "partition"] {
            (rc, out) = try runProcess(flexids, ["run"] + rules + ["--pcap", ReplayTests.trace, "--instances", "2", "--steering", mode,
                                                                   "--table", "\(dir)/s.toml", "--alerts", "\(dir)/\(mode).fast", "--json", "\(dir)/\(mode).json"])
            #expect(rc == 0 && out.contains("packets/s"), "\(out)")
            fast[mode] = try String(contentsOfFile: "\(dir)/\(mode).fast", encoding: .utf8)
            let json = try String(contentsOfFile: "\(dir)/\(mode).json", encoding: .utf8).split(separator: "\n")
            #expect(json.allSatisfy { (try? JSONSerialization.jsonObject(with: Data($0.utf8))) != nil })
        }
        #expect(fast["hash"] == fast["partition"] && fast["hash"]!.contains("[1:9000001:1] FLEX WEB request for /etc/passwd [**] [Classification: attempted-recon] [Priority: 2] {TCP}"))
        (rc, out) = try runProcess(flexids, ["compare"] + rules + ["--pcap", ReplayTests.trace, "--instances", "2", "--rounds", "1", "--prefix", "0.1"])
        #expect(rc == 0 && out.contains("partition / hash: packets/s") && out.contains("alerts identical"), "\(out)")
    }

    /// Reading the trace through a DPDK net_pcap vdev gives the alerts libpcap gives
    /// (frames are stamped on arrival, so timestamps differ).
    @Test func dpdkNetPcapInput() throws {
        let flexids = try builtExecutable("flexids")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let rules = ["--rules", "Configs/ids/flex-sample.rules", "--vars", "Configs/ids/snort-vars.conf", "--pcap", ReplayTests.trace, "--prefix", "0"]
        var alerts: [String] = []
        for io in ["pcap", "dpdk"] {
            let (rc, out) = try runProcess(flexids, ["run"] + rules + ["--io", io, "--json", "\(dir)/\(io).json"])
            #expect(rc == 0 && out.contains("6116 packets"), "\(out)")
            let text = try String(contentsOfFile: "\(dir)/\(io).json", encoding: .utf8)
            alerts.append(text.replacingOccurrences(of: #""timestamp_ns":[0-9]+,"#, with: "", options: .regularExpression))
        }
        #expect(alerts[0] == alerts[1] && alerts[0].split(separator: "\n").count > 100)
    }

    @Test func brokenInputsGetClearMessages() throws {
        let flexids = try builtExecutable("flexids")
        let dir = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
            alert tcp any any -> any 80 (msg:"fine"; content:"a"; sid:1;)
            alert tcp $NOWHERE any -> any 80 (msg:"undefined"; sid:2;)
            alert tcp any any -> any 80 (msg:"bad pcre"; pcre:"/(/"; sid:3;)
            alert tcp any any -> any 80 (msg:"broken"
            """.write(toFile: "\(dir)/r.rules", atomically: true, encoding: .utf8)
        var (rc, out) = try runProcess(flexids, ["rules", "--rules", "\(dir)/r.rules"])
        #expect(rc == 0 && out.contains("r.rules:2: skipped: undefined variable $NOWHERE") && out.contains("r.rules:3: skipped: pcre rejected")
                && out.contains("r.rules:4: skipped: malformed") && out.contains("loaded 1, skipped 3"), "\(out)")
        // --warnings -1 (as the help says), not only --warnings=-1.
        (rc, out) = try runProcess(flexids, ["rules", "--rules", "\(dir)/r.rules", "--warnings", "-1"])
        #expect(rc == 0 && out.contains("r.rules:4: skipped: malformed"), "\(out)")
        (rc, out) = try runProcess(flexids, ["run", "--rules", "\(dir)/r.rules", "--pcap", "\(dir)/missing.pcap"])
        #expect(rc != 0 && out.contains("missing.pcap") && !out.contains("Usage:"), "\(out)")
        (rc, out) = try runProcess(flexids, ["run", "--rules", "\(dir)/r.rules", "--pcap", ReplayTests.trace, "--steering", "partition"])
        #expect(rc != 0 && out.contains("needs --table"), "\(out)")
        (rc, out) = try runProcess(flexids, ["partition", "--profile", "\(dir)/r.rules"])
        #expect(rc != 0 && out.contains("not a flexids profile"), "\(out)")
    }
}

extension ReplayTests {
    /// From fuzzing: a Linux cooked v2 record shorter than its 20-byte header trapped the
    /// loader; it is skipped and counted.
    @Test func aCookedRecordShorterThanItsHeaderIsSkipped() throws {
        var file: [UInt8] = [0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 0x14, 0x01, 0, 0]
        file += [0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 4, 0, 0, 0] + [0x08, 0x00, 0, 0]
        let path = NSTemporaryDirectory() + "cooked-short-\(getpid()).pcap"
        try Data(file).write(to: URL(fileURLWithPath: path))
        defer { unlink(path) }
        let t = try Trace(path: path)
        #expect(t.records.isEmpty && t.skipped == 1)
    }
}
