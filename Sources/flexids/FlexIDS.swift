import ArgumentParser
import FlexCLI
import FlexIDS
import FlexIO
import FlexConfig
import FlexNIC
import Foundation

/// flexids: Snort rules -> port groups -> flow-group profile -> partition -> steering.
@main
struct FlexIDSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "flexids",
        abstract: "An IDS steering partitioner and evaluator for Snort rule sets.",
        discussion: """
            Typical use:
              flexids generate --out /tmp/mix.pcap --flows 5000
              flexids profile --rules R --vars V --pcap /tmp/mix.pcap --out /tmp/profile.json
              flexids partition --profile /tmp/profile.json --instances 4 --out /tmp/steering.toml
              flexids run --rules R --vars V --pcap /tmp/mix.pcap --instances 4 --steering partition --table /tmp/steering.toml
            """,
        subcommands: [CheckRules.self, Generate.self, ProfileCommand.self, PartitionCommand.self, Run.self, Inspect.self, Compare.self,
                      StreamScan.self])
}

func warn(_ s: String) { FileHandle.standardError.write(Data("\(s)\n".utf8)) }

/// What the decoders did, where they did anything: tunnels, fragments, streams, HTTP.
func printDecoding(_ c: Inspector.Counters) {
    if c.decapsulated > 0 { print("  tunnels: \(c.decapsulated) packets inspected inside their tunnel") }
    if c.fragments > 0 {
        print("  fragments: \(c.fragments), \(c.reassembled) datagrams rebuilt, \(c.fragmentDatagramsDropped) dropped, \(c.fragmentOverlaps) overlaps")
    }
    if c.streamSegments > 0 {
        print("  streams: \(c.streamSegments) client segments, \(c.streamPDUs) PDUs inspected whole, \(c.streamOverlaps) overlaps, "
              + "\(c.streamGaps) holes skipped, \(c.streamOutOfWindow) out of window, \(c.streamSessionsDropped) sessions over the memory cap")
    }
    if c.pipelinedRequests + c.httpBodiesDecoded + c.httpBodiesUndecodable > 0 {
        print("  http: \(c.pipelinedRequests) pipelined requests, \(c.httpBodiesDecoded) bodies dechunked or inflated, \(c.httpBodiesUndecodable) that would not inflate")
    }
}

/// Rule and variable files, loaded the same way by every subcommand.
struct RuleOptions: ParsableArguments {
    @Option(name: .long, help: "Snort rule file (repeat for several).") var rules: [String]
    @Option(help: "Snort variables file (ipvar/portvar/var lines), e.g. Configs/ids/snort-vars.conf.") var vars: String?
    @Option(parsing: .unconditional, help: "Skipped rules to list one by one (the summary counts them all; -1 lists all).") var warnings = 10
    @Option(help: "all: packets with a wrong IPv4, TCP, UDP or ICMP checksum are counted and not inspected (Snort's default); none: inspect them anyway (captures of a host with checksum offload).")
    var checksumMode: DetectionEngine.ChecksumMode = .all
    @Option(help: "Fast-pattern matcher of the port groups: hyperscan (Hyperscan's literal matcher, loaded at run time from libhs.so.5), dfa (the built-in Aho-Corasick full DFA, 1 KiB per state), auto (hyperscan if it loads, else dfa).")
    var matcher: MatcherChoice = .auto
    @Option(help: "Where compiled Hyperscan databases are kept between runs (default: $XDG_CACHE_HOME/flexids/hyperscan or ~/.cache/flexids/hyperscan; \"none\": compile every time).")
    var matcherCache: String?
    @Flag(help: "Inspect TCP segments only as they came: no reassembly of the client side of sessions (on by default, as Snort's stream5 for its ports client list).")
    var noStreamReassembly = false

    func validate() throws {
        if matcher == .hyperscan && !HyperscanDatabase.isAvailable {
            throw ValidationError("--matcher hyperscan: \(HyperscanDatabase.unavailableReason)")
        }
    }

    /// Loads the rules, prints warnings and the loaded/skipped summary to stderr.
    func load(quiet: Bool = false) throws -> RuleSet {
        let start = Date()
        do {
            let variables = try vars.map { try RuleVariables.load(path: $0) } ?? RuleVariables()
            let set = try RuleSet.load(paths: rules, variables: variables)
            for s in set.skipped.prefix(warnings < 0 ? Int.max : warnings) { warn("warning: \(s)") }
            if warnings >= 0 && set.skipped.count > warnings {
                warn("warning: \(set.skipped.count - warnings) more skipped rules (--warnings -1 lists them)")
            }
            warn(String(format: "rules: loaded %d, skipped %d in %.2f s", set.rules.count, set.skipped.count, Date().timeIntervalSince(start)))
            if !quiet { for s in set.skipSummary { warn("  skipped \(s.count): \(s.reason) (first at \(s.first))") } }
            return set
        } catch {
            throw RuntimeFailure("\(error)")
        }
    }

    /// Loads the rules (summary on stderr) and compiles their port groups.
    func engine() throws -> DetectionEngine { engine(for: try load(quiet: true)) }

    /// Compiles the port groups of loaded rules with the chosen checksum mode and matcher.
    func engine(for set: RuleSet) -> DetectionEngine {
        let cache = matcherCache == "none" ? nil : HyperscanCache(directory: matcherCache ?? HyperscanCache.defaultDirectory)
        return DetectionEngine(rules: set.rules, checksums: checksumMode, matcher: matcher, streams: !noStreamReassembly, matcherCache: cache)
    }
}

/// Loads the trace through a DPDK `net_pcap` vdev replaying `path`.
func loadTraceThroughDPDK(_ path: String, _ dpdk: DPDKOptions) throws -> Trace {
    guard FileManager.default.isReadableFile(atPath: path) else { throw RuntimeFailure("\(path): cannot read the capture") }
    let port = try dpdk.openPort(defaultEAL: ["--no-huge", "--no-pci", "-m", "512", "--log-level=3", "--file-prefix=flexids\(getpid())",
                                                         "--vdev=net_pcap0,rx_pcap=\(path)"],
                                 defaultDevice: "net_pcap0")
    defer { port.stop() }
    return DPDKEnvironment.asLcore { Trace(port: port, name: "dpdk:\(port.name)(\(path))") }
}

func loadTrace(_ path: String) throws -> Trace {
    let trace: Trace
    do { trace = try Trace(path: path) } catch { throw RuntimeFailure("\(error)") }
    if let e = trace.error { warn("warning: \(e); using the \(trace.records.count) packets before it") }
    if trace.skipped > 0 { warn("warning: \(path): \(trace.skipped) records skipped (over 65535 bytes, or shorter than the link header)") }
    return trace
}

/// `flexids rules`: load a rule set and report what was loaded, skipped and built.
struct CheckRules: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rules",
        abstract: "Load Snort rules; report how many loaded, why the others were skipped, and the port groups.",
        discussion: """
            Reads Snort 2.9 rules: header with address and port lists, ranges, negation and \
            $VARIABLES; content with |hex|, nocase, offset, depth, distance, within, negation, \
            fast_pattern and the HTTP buffers (http_uri, http_method, http_header, http_cookie, \
            http_client_body, http_stat_code, http_stat_msg, file_data, uricontent); pcre via \
            PCRE2 with JIT (buffer flags U I H D P M C K S Y; R relative); byte_test, \
            byte_jump, byte_extract (variables usable by later options); flowbits (per flow, \
            groups); ttl, tos, id, ip_proto, fragbits, fragoffset, sameip, seq, ack, window, \
            itype, icode, icmp_id, icmp_seq, ipopts; base64_decode and base64_data; asn1; \
            ftpbounce; byte_math; rpc; stream_size; replace (inline only: replaces nothing); tag \
            (checked; changes no alert); flow; flags; \
            dsize; urilen; isdataat; threshold; detection_filter; msg, sid, rev, gid, \
            priority, classtype, reference. pass rules silence their packet, log rules raise \
            no alert, drop and sdrop rules are not loaded (inline only), as Snort in IDS \
            mode. Snort 3 files are recognised and read as such: sticky buffers (http_uri; \
            content:...), modifiers inside content ("x", nocase, depth 4), service rules \
            (alert http (...), mapped to the service's ports), rules over several lines. \
            IPv4 and IPv6 addresses and blocks in headers. A rule using anything else is \
            skipped with a warning naming file and line.
            """)

    @OptionGroup var ruleOptions: RuleOptions
    @Flag(help: "List every port group with its rules and automaton size.") var groups = false

    func run() throws {
        let set = try ruleOptions.load()
        let start = Date()
        let engine = ruleOptions.engine(for: set)
        print(String(format: "port groups: %d, %@ matchers %.1f MiB, built in %.2f s", engine.groups.count, engine.matcher.rawValue,
                     Double(engine.memoryFootprint) / 1048576, Date().timeIntervalSince(start)))
        let shown = groups ? engine.groups : Array(engine.groups.sorted { $0.memoryFootprint > $1.memoryFootprint }.prefix(8))
        if !groups { print("largest groups (--groups lists all):") }
        for g in shown {
            print(String(format: "  %-40@ %5d rules %7d states %8.1f KiB", g.name, g.rules.count, g.stateCount, Double(g.memoryFootprint) / 1024))
        }
    }
}

/// `flexids generate`: write the synthetic mix.
struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write a pcap of synthetic traffic (HTTP, TLS, DNS, SMTP, SSH, FTP, MySQL, IRC, NTP, probes; both directions).",
        discussion: "A share of the flows (--triggers) carries payloads that fire Configs/ids/flex-sample.rules.")

    @Option(name: .output, help: "Output pcap.") var out: String
    @Option(help: "TCP connections and UDP exchanges to generate.") var flows = 2000
    @Option(help: "Random seed (same seed, same file).") var seed: UInt64 = 1
    @Option(help: "Fraction of flows with rule-triggering payloads.") var triggers = 0.04

    func validate() throws {
        guard flows > 0 else { throw ValidationError("--flows must be positive") }
        guard (0...1).contains(triggers) else { throw ValidationError("--triggers is a fraction in 0...1") }
    }

    func run() throws {
        var generator = TrafficGenerator(flows: flows, seed: seed, triggerShare: triggers)
        let n = try generator.write(to: out)
        print("wrote \(out): \(n) packets in \(flows) flows")
    }
}

/// `flexids profile`.
struct ProfileCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "profile",
        abstract: "Inspect a trace prefix on one instance and record, per flow group, packets, bytes and cycles.",
        discussion: """
            A flow group is the protocol and the service ports of a flow (ports some rule \
            group is keyed by); it fixes the port groups the flow's packets check, in both \
            directions. The profile is JSON, heaviest flow group first.
            """)

    @OptionGroup var ruleOptions: RuleOptions
    @Option(help: "Trace to profile (Ethernet, Linux cooked or raw IP; VLAN tags allowed).") var pcap: String
    @Option(help: "Fraction of the trace to profile (from its start).") var prefix = 0.02
    @Option(name: .output, help: "Profile file to write.") var out = "ids-profile.json"

    func validate() throws {
        guard prefix > 0 && prefix <= 1 else { throw ValidationError("--prefix is a fraction in (0, 1]") }
    }

    func run() throws {
        let engine = try ruleOptions.engine()
        let trace = try loadTrace(pcap)
        let count = max(1, Int((Double(trace.records.count) * prefix).rounded()))
        guard trace.records.count > 0 else { throw RuntimeFailure("\(pcap): no packets") }
        let profile = Profile.measure(engine: engine, trace: trace, count: min(count, trace.records.count), rules: ruleOptions.rules, prefix: prefix)
        try profile.write(to: out)
        let total = max(profile.entries.reduce(0) { $0 + $1.cycles }, 1)
        print("profiled \(profile.packets) of \(trace.records.count) packets: \(profile.entries.count) flow groups -> \(out)")
        for e in profile.entries.prefix(12) {
            print(String(format: "  %-18@ %7d pkts %5.1f %% cycles  %@", e.name, e.packets, Double(e.cycles) * 100 / Double(total),
                         e.portGroups.joined(separator: " | ")))
        }
    }
}

/// `flexids partition`.
struct PartitionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "partition",
        abstract: "Assign flow groups to instances (greedy, heaviest first, least-loaded instance) and write the steering program.",
        discussion: "The output is a FlexNIC steering program (TOML, as in Configs/steering/); traffic outside the profile is hashed symmetrically.")

    @Option(help: "Profile from `flexids profile`.") var profile: String
    @Option(help: "IDS instances.") var instances = 4
    @Option(name: .output, help: "Steering program to write.") var out = "ids-steering.toml"
    @Flag(help: "Never spread a flow group over several instances (the thesis's plain greedy), even one heavier than an instance's share.") var noSplit = false
    @Option(help: "Load slack, in fair shares, within which a flow group goes where its port groups already are (0: plain greedy).") var slack = 0.0

    func validate() throws {
        guard (1...64).contains(instances) else { throw ValidationError("--instances must be 1...64") }
        guard slack >= 0 else { throw ValidationError("--slack must not be negative") }
    }

    func run() throws {
        let p: Profile
        do { p = try Profile.load(path: profile) } catch { throw RuntimeFailure("\(error)") }
        let (assignment, load) = p.partition(instances: instances, split: !noSplit, slack: slack)
        let (program, omitted) = IDSSteering.partitionProgram(assignment: assignment, instances: instances)
        var comment = "FlexIDS partition steering (written by `flexids partition`): each flow group\n"
            + "goes to its instance; traffic outside the profile is hashed symmetrically."
        if omitted > 0 { comment += "\n\(omitted) lightest flow groups are hashed: the program holds \(SteeringProgram.maximumStages) stages." }
        let text = try ProgramFile.write(program, comment: comment)
        guard FileManager.default.createFile(atPath: out, contents: Data(text.utf8)) else { throw RuntimeFailure("\(out): cannot write") }
        let total = Double(max(load.reduce(0, +), 1))
        print("\(assignment.count) flow groups onto \(instances) instances -> \(out)")
        for i in 0..<instances {
            let mine = assignment.filter { $0.instances.contains(i) }.map { $0.instances.count > 1 ? "\($0.group) (1/\($0.instances.count))" : "\($0.group)" }
            print(String(format: "  instance %d: %5.1f %% of profiled cycles  %@", i, Double(load[i]) * 100 / total,
                         mine.prefix(8).joined(separator: ", ") + (mine.count > 8 ? ", ... (\(mine.count))" : "")))
        }
    }
}

/// `flexids run`.
struct Run: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replay a trace through a steering program to N instance threads and report throughput, load and alerts.",
        discussion: """
            The part of the trace after --prefix is replayed (the part `flexids profile` \
            learned from is skipped). Each instance has its own flow table and matcher \
            state; both directions of a flow reach the same instance in every mode, so the \
            alerts are the same in every mode and with one instance, as long as no \
            instance's flow table overflows (--flows; overflow is counted and reported).
            """)

    @OptionGroup var ruleOptions: RuleOptions
    @Option(help: "Trace to replay.") var pcap: String
    @Option(help: "IDS instances (threads).") var instances = 4
    @Option(help: "hash (RSS, symmetric key), symmetric (sorted-tuple Toeplitz) or partition (needs --table).") var steering: SteeringMode = .hash
    @Option(help: "Steering program from `flexids partition` (for --steering partition).") var table: String?
    @Option(help: "Fraction at the start of the trace to skip (the profiled prefix).") var prefix = 0.02
    @Option(help: "Flows each instance tracks (more are inspected without state, counted).") var flows = 65536
    @Option(help: "Write alerts in Snort's fast format here (- for stdout).") var alerts: String?
    @Option(help: "Write alerts as JSON lines here (- for stdout).") var json: String?
    @Option(help: "Write each instance's share of the trace to DIR/instance-N.pcap (for Scripts/ids-cachegrind.sh).") var shares: String?
    @Option(help: "How the trace is read: pcap (libpcap) or dpdk (a DPDK net_pcap vdev replaying --pcap; frames stamped on arrival).") var io: TraceInput = .pcap
    @OptionGroup(title: "DPDK (with --io dpdk; default EAL arguments: --no-huge --no-pci -m 512 --vdev=net_pcap0,rx_pcap=<pcap>, device net_pcap0)")
    var dpdk: DPDKOptions

    func validate() throws {
        guard (1...64).contains(instances) else { throw ValidationError("--instances must be 1...64") }
        guard steering != .partition || table != nil else { throw ValidationError("--steering partition needs --table (from flexids partition)") }
        guard (0..<1).contains(prefix) else { throw ValidationError("--prefix is a fraction in [0, 1)") }
        guard (1...(1 << 26)).contains(flows) else { throw ValidationError("--flows must be 1...\(1 << 26)") }
    }

    func run() throws {
        let engine = try ruleOptions.engine()
        if io == .pcap { try dpdk.refuse() }
        let trace = io == .dpdk ? try loadTraceThroughDPDK(pcap, dpdk) : try loadTrace(pcap)
        let program: SteeringProgram
        switch steering {
        case .hash: program = IDSSteering.hashProgram(instances: instances, symmetricSort: false)
        case .symmetric: program = IDSSteering.hashProgram(instances: instances, symmetricSort: true)
        case .partition:
            do { program = try ProgramFile.load(path: table!) } catch { throw RuntimeFailure("\(error)") }
            guard program.queues == instances else {
                throw RuntimeFailure("\(table!) steers to \(program.queues) instances, not \(instances) (rerun flexids partition --instances \(instances))")
            }
        }
        let first = Int((Double(trace.records.count) * prefix).rounded())
        let replay = try Replay(engine: engine, trace: trace, records: first..<trace.records.count, program: program, flowCapacity: flows)
        warn("replaying \(trace.records.count - first) packets to \(instances) instances (\(steering.rawValue) steering)...")
        let r = replay.run(keepShares: shares != nil)
        print(String(format: "%@ steering, %d instances: %d packets in %.3f s: %.0f packets/s, %.1f Mbit/s; %d alerts",
                     steering.rawValue, instances, r.packets, r.seconds, r.packetsPerSecond, r.megabitsPerSecond, r.alerts.count))
        let inspected = r.instances.reduce(Inspector.Counters(), +)
        print("  drops: \(r.slowPath) not steered (malformed), \(inspected.undecodable) undecodable, \(inspected.badChecksums) bad checksums, \(inspected.untrackedFlows) flows untracked (table full); dispatcher waited \(r.dispatcherWaits) times on a full ring")
        printDecoding(inspected)
        let maxCycles = r.instances.map(\.cycles).max() ?? 0
        for (i, c) in r.instances.enumerated() {
            print(String(format: "  instance %d: %8d packets %6.1f %%  %7.0f cycles/packet  %6d alerts", i, c.packets,
                         Double(c.packets) * 100 / Double(max(r.packets, 1)), Double(c.cycles) / Double(max(c.packets, 1)), c.alerts))
        }
        print(String(format: "  inspection cycles: total %.1f M (%.0f per packet), busiest instance %.1f M",
                     Double(inspected.cycles) / 1e6, Double(inspected.cycles) / Double(max(inspected.packets, 1)), Double(maxCycles) / 1e6))
        try writeAlerts(r.alerts, engine: engine, fast: alerts, json: json)
        if let dir = shares, let indices = r.shares {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            for (i, share) in indices.enumerated() { try trace.write(share, to: "\(dir)/instance-\(i).pcap") }
            print("  shares written to \(dir)/instance-N.pcap")
        }
    }
}

/// `flexids inspect`: one instance, on the calling thread, no steering.
struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Inspect a whole trace on one instance in the calling thread (no steering, no threads) and print its alerts.",
        discussion: "What Scripts/ids-cachegrind.sh runs under cachegrind for each instance's share of a trace.")

    @OptionGroup var ruleOptions: RuleOptions
    @Option(help: "Trace to inspect.") var pcap: String
    @Option(help: "Write alerts in Snort's fast format here (- for stdout).") var alerts: String?
    @Option(help: "Write alerts as JSON lines here (- for stdout).") var json: String?
    @Option(help: "List the N rules most often confirmed (their fast pattern matched): what costs the most.") var topRules = 0

    func run() throws {
        let engine = try ruleOptions.engine()
        let trace = try loadTrace(pcap)
        let inspector = Inspector(engine: engine, profileRules: topRules > 0)
        for i in 0..<trace.records.count { inspector.inspect(trace, record: i) }
        inspector.finish()
        let c = inspector.counters
        let list = ThresholdFilter.apply(inspector.takeAlerts(), rules: engine.rules)
        print(String(format: "inspected %d packets (%d undecodable, %d bad checksums): %.0f cycles/packet, %d scans, %d candidate rules, %d alerts",
                     c.packets, c.undecodable, c.badChecksums, Double(c.cycles) / Double(max(c.packets, 1)), c.scans, c.candidates, list.count))
        printDecoding(c)
        try writeAlerts(list, engine: engine, fast: alerts, json: json)
        if let counts = inspector.candidateCounts {
            print("rules most often confirmed (candidates per packet, fast pattern, where):")
            for (r, n) in counts.enumerated().sorted(by: { $0.element > $1.element }).prefix(topRules) where n > 0 {
                let rule = engine.rules[r]
                let pattern = rule.fastPattern.map { String(decoding: $0.bytes, as: UTF8.self).debugDescription } ?? "(none)"
                print(String(format: "  %6.3f  %@  sid %d %@ (%@)", Double(n) / Double(max(c.packets, 1)), pattern, rule.sid, rule.message, rule.location.description))
            }
        }
    }
}

/// `flexids stream-scan`: Hyperscan's block mode (what flexids runs) against its
/// streaming mode, for one port group's fast patterns over a trace's client data.
struct StreamScan: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "stream-scan",
        abstract: "Measure Hyperscan's streaming mode against the block mode flexids uses, on one TCP port group.",
        discussion: """
            Takes the fast patterns of the largest TCP group serving --port, compiles them for both modes, and \
            replays the trace's TCP data to that port: block mode scans each segment and then, on a port stream \
            reassembly serves, each PDU of two or more segments again (as flexids does); streaming mode feeds each segment once into its \
            flow's stream. Prints cycles per payload byte of the scans alone, pattern hits, and the memory each \
            needs (databases; stream state per open flow).
            """)

    @OptionGroup var ruleOptions: RuleOptions
    @Option(help: "Trace (Ethernet).") var pcap: String
    @Option(help: "Server port whose group is measured.") var port: UInt16 = 80

    func run() throws {
        let engine = try ruleOptions.engine()
        let trace = try loadTrace(pcap)
        guard let r = StreamScanComparison.run(engine: engine, trace: trace, port: port) else {
            throw ValidationError("no TCP group with fast patterns serves port \(port), or Hyperscan is unavailable (\(HyperscanDatabase.unavailableReason))")
        }
        let bytes = Double(max(r.payloadBytes, 1))
        print("stream-scan: group \(r.group), \(r.patterns) fast patterns; \(r.segments) segments, \(r.payloadBytes) payload bytes, \(r.flows) flows (at most \(r.mostOpenFlows) open)")
        print(String(format: "  block:     %.2f cycles/payload byte (%d bytes scanned, %.2fx the payload), %d hits; database %.1f KiB",
                     Double(r.blockCycles) / bytes, r.blockBytes, Double(r.blockBytes) / bytes, r.blockHits, Double(r.blockDatabaseBytes) / 1024))
        print(String(format: "  streaming: %.2f cycles/payload byte (each byte once, streams opened and closed), %d hits; database %.1f KiB, %d bytes of state per open flow (%.1f KiB at most)",
                     Double(r.streamCycles) / bytes, r.streamHits, Double(r.streamDatabaseBytes) / 1024, r.streamStateBytes,
                     Double(r.streamStateBytes * r.mostOpenFlows) / 1024))
    }
}

/// Writes alerts in Snort's fast format and/or as JSON lines (`-`: standard output).
func writeAlerts(_ list: [Alert], engine: DetectionEngine, fast: String?, json: String?) throws {
    for (path, format) in [(fast, AlertFormat.fast), (json, AlertFormat.json)] {
        guard let path else { continue }
        try OutputFile(path).write(list.map { format($0, engine.rules[Int($0.rule)]) + "\n" }.joined())
    }
}

/// `flexids compare`: the evaluation in one invocation.
struct Compare: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Profile, partition, then replay with hash and partition steering alternately (A B A B); print the ratios.",
        discussion: """
            Loads the rules and the trace once, profiles the first --prefix, partitions onto \
            --instances, and replays the rest --rounds times in each mode, alternating. \
            Prints packets/s per round, the median ratio partition / hash, and the \
            instances' inspection cycles per packet. Fails if any round's alerts differ \
            from the first round's.
            """)

    @OptionGroup var ruleOptions: RuleOptions
    @Option(help: "Trace to replay.") var pcap: String
    @Option(help: "IDS instances (threads).") var instances = 4
    @Option(help: "Fraction of the trace to profile (the rest is replayed).") var prefix = 0.02
    @Option(help: "Rounds per mode.") var rounds = 3
    @Flag(help: "Partition without spreading heavy flow groups (see flexids partition --help).") var noSplit = false
    @Option(help: "Partition load slack (see flexids partition --help).") var slack = 0.0

    func validate() throws {
        guard (1...64).contains(instances) else { throw ValidationError("--instances must be 1...64") }
        guard prefix > 0 && prefix < 1 else { throw ValidationError("--prefix is a fraction in (0, 1)") }
        guard rounds > 0 else { throw ValidationError("--rounds must be positive") }
    }

    func run() throws {
        let engine = try ruleOptions.engine()
        let trace = try loadTrace(pcap)
        let first = max(1, Int((Double(trace.records.count) * prefix).rounded()))
        guard first < trace.records.count else { throw RuntimeFailure("\(pcap): too few packets for --prefix \(prefix)") }
        let profile = Profile.measure(engine: engine, trace: trace, count: first, rules: ruleOptions.rules, prefix: prefix)
        let (assignment, load) = profile.partition(instances: instances, split: !noSplit, slack: slack)
        let total = Double(max(load.reduce(0, +), 1))
        print("profiled \(first) packets, \(profile.entries.count) flow groups; partition loads " +
              load.map { String(format: "%.0f %%", Double($0) * 100 / total) }.joined(separator: " / "))
        let programs: [(String, SteeringProgram)] = [
            ("hash", IDSSteering.hashProgram(instances: instances, symmetricSort: false)),
            ("partition", IDSSteering.partitionProgram(assignment: assignment, instances: instances).program),
        ]
        var rates: [String: [Double]] = [:], cycles: [String: [Double]] = [:]
        var reference: [Alert]?
        for round in 1...rounds {
            for (name, program) in programs {
                let r = try Replay(engine: engine, trace: trace, records: first..<trace.records.count, program: program).run()
                if reference == nil { reference = r.alerts }
                guard r.alerts == reference else {
                    throw RuntimeFailure("\(name) round \(round): \(r.alerts.count) alerts, first round had \(reference!.count)")
                }
                let c = r.instances.reduce(Inspector.Counters(), +)
                let perPacket = Double(c.cycles) / Double(max(c.packets, 1))
                rates[name, default: []].append(r.packetsPerSecond)
                cycles[name, default: []].append(perPacket)
                print(String(format: "  round %d %-9@ %9.0f packets/s %7.1f Mbit/s  %7.0f cycles/packet  busiest instance %4.1f %% of packets",
                             round, name, r.packetsPerSecond, r.megabitsPerSecond, perPacket,
                             Double(r.steered.max() ?? 0) * 100 / Double(max(r.packets, 1))))
            }
        }
        func median(_ v: [Double]) -> Double { v.sorted()[v.count / 2] }
        print(String(format: "partition / hash: packets/s %.2fx (medians %.0f / %.0f), inspection cycles per packet %.2f; alerts identical (%d)",
                     median(rates["partition"]!) / median(rates["hash"]!), median(rates["partition"]!), median(rates["hash"]!),
                     median(cycles["partition"]!) / median(cycles["hash"]!), reference?.count ?? 0))
    }
}

extension SteeringMode: ExpressibleByArgument {}
extension DetectionEngine.ChecksumMode: ExpressibleByArgument {}
extension MatcherChoice: ExpressibleByArgument {}

/// `flexids run --io`: how the trace is read.
enum TraceInput: String, CaseIterable, ExpressibleByArgument {
    /// libpcap.
    case pcap
    /// A DPDK net_pcap vdev replaying the capture.
    case dpdk
}
