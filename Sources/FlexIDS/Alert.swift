import Foundation

/// One rule firing on one packet. Packets are numbered from 1 in trace order, so the
/// alerts of different instances merge back into one order.
public struct Alert: Sendable, Hashable, Comparable {
    public var packet: Int
    public var timestampNanoseconds: UInt64
    /// Index into the engine's rules.
    public var rule: Int32
    public var proto: UInt8
    /// Addresses in `IPAddressing`'s form (IPv4 mapped).
    public var source: UInt128
    public var destination: UInt128
    public var sourcePort: UInt16
    public var destinationPort: UInt16

    public static func < (a: Alert, b: Alert) -> Bool { (a.packet, a.rule) < (b.packet, b.rule) }

    /// Equality of what was detected (not of which instance or when it was printed).
    public var identity: String { "\(packet) \(rule)" }
}

/// Alert output: Snort's "fast" one-line format and JSON lines.
public enum AlertFormat {
    static func address(_ a: UInt128) -> String { IPAddressing.text(a) }

    static func protocolName(_ p: UInt8) -> String {
        switch p { case 6: "TCP"; case 17: "UDP"; case 1: "ICMP"; case 58: "IPV6-ICMP"; default: "PROTO:\(p)" }
    }

    /// `11/22-15:04:05.123456  [**] [1:2001:3] msg [**] [Classification: c] [Priority: 2] {TCP} a:p -> b:q`
    /// (the classification is the rule's classtype name; no classification.config is read).
    public static func fast(_ alert: Alert, rule r: SnortRule) -> String {
        let seconds = time_t(alert.timestampNanoseconds / 1_000_000_000)
        var tm = tm()
        var s = seconds
        gmtime_r(&s, &tm)
        let micros = alert.timestampNanoseconds % 1_000_000_000 / 1000
        var line = String(format: "%02d/%02d-%02d:%02d:%02d.%06d  [**] [%d:%d:%d] %@ [**]", tm.tm_mon + 1, tm.tm_mday,
                          tm.tm_hour, tm.tm_min, tm.tm_sec, Int(micros), r.generator, r.sid, r.revision, r.message)
        if let c = r.classtype { line += " [Classification: \(c)]" }
        if let p = r.priority { line += " [Priority: \(p)]" }
        line += " {\(protocolName(alert.proto))} \(address(alert.source))"
        if alert.proto == 6 || alert.proto == 17 {
            line += ":\(alert.sourcePort) -> \(address(alert.destination)):\(alert.destinationPort)"
        } else {
            line += " -> \(address(alert.destination))"
        }
        return line
    }

    /// One JSON object per alert.
    public static func json(_ alert: Alert, rule r: SnortRule) -> String {
        func quoted(_ s: String) -> String {
            var out = "\""
            for u in s.unicodeScalars {
                switch u {
                case "\"": out += "\\\""
                case "\\": out += "\\\\"
                case _ where u.value < 0x20: out += String(format: "\\u%04x", u.value)
                default: out.unicodeScalars.append(u)
                }
            }
            return out + "\""
        }
        var fields = [
            "\"packet\":\(alert.packet)", "\"timestamp_ns\":\(alert.timestampNanoseconds)",
            "\"gid\":\(r.generator)", "\"sid\":\(r.sid)", "\"rev\":\(r.revision)", "\"msg\":\(quoted(r.message))",
            "\"proto\":\(quoted(protocolName(alert.proto)))",
            "\"src\":\(quoted(address(alert.source)))", "\"dst\":\(quoted(address(alert.destination)))",
        ]
        if alert.proto == 6 || alert.proto == 17 { fields += ["\"sport\":\(alert.sourcePort)", "\"dport\":\(alert.destinationPort)"] }
        if let c = r.classtype { fields.append("\"classtype\":\(quoted(c))") }
        if let p = r.priority { fields.append("\"priority\":\(p)") }
        return "{" + fields.joined(separator: ",") + "}"
    }
}

/// Snort's rate filters over alerts in packet order: each rule's `detection_filter`
/// (matches from one host count; alerts only past the count), then its `threshold`
/// (the event filter). After detection, so every steering mode filters the same merged
/// stream the same way.
public enum ThresholdFilter {
    public static func apply(_ alerts: [Alert], rules: [SnortRule]) -> [Alert] {
        let detected = filter(alerts.sorted(), rules) { $0.detectionFilter }
        return filter(detected, rules) { $0.threshold }
    }

    static func filter(_ alerts: [Alert], _ rules: [SnortRule], by option: (SnortRule) -> Threshold?) -> [Alert] {
        struct Window { var start: UInt64; var count: Int }
        struct Key: Hashable { var rule: Int32; var host: UInt128 }
        var windows: [Key: Window] = [:]
        return alerts.filter { a in
            guard let t = option(rules[Int(a.rule)]) else { return true }
            let key = Key(rule: a.rule, host: t.trackBySource ? a.source : a.destination)
            let span = UInt64(t.seconds) * 1_000_000_000
            var w = windows[key] ?? Window(start: a.timestampNanoseconds, count: 0)
            if a.timestampNanoseconds &- w.start >= span { w = Window(start: a.timestampNanoseconds, count: 0) }
            w.count += 1
            windows[key] = w
            switch t.kind {
            case .limit: return w.count <= t.count
            case .threshold: return w.count % t.count == 0
            case .both: return w.count == t.count
            case .detectionFilter: return w.count > t.count
            }
        }
    }
}
