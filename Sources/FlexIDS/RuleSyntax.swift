/// Which Snort's rule language a file is written in. They differ where it matters: a
/// Snort 2.9 buffer keyword (`http_uri;`) modifies the content before it, a Snort 3
/// one is a sticky buffer for the contents after it; Snort 3 puts content modifiers
/// inside the option (`content:"a", nocase, depth 4;`) and has service rules
/// (`alert http (...)`, `alert http any any -> any any (...)`).
public enum RuleSyntax: String, Sendable, CaseIterable {
    case snort2, snort3

    /// Snort 3 if the text shows something only Snort 3 writes: a service as a rule's
    /// protocol, modifiers inside a content option, or the `service:` or `rem:` option;
    /// else Snort 2.9.
    public static func detect(_ text: String) -> RuleSyntax {
        for line in text.utf8.split(separator: 0x0A) {
            let s = Substring(line).trimmingWhitespace
            guard !s.isEmpty, s.first != "#" else { continue }
            let words = s.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "(" }).prefix(2)
            if words.count == 2, SnortRule.Action(rawValue: String(words[0])) != nil, ServiceRule.services[words[1]] != nil { return .snort3 }
            // The options on this line (a rule's, or a continued rule's).
            let options = s.firstIndex(of: "(").map { s[s.index(after: $0)...] } ?? s
            for option in (try? RuleParser.splitOptions(options.last == ")" ? options.dropLast() : options)) ?? [] {
                let name = option.prefix { $0 != ":" }.trimmingWhitespace
                if name == "service" || name == "rem" { return .snort3 }
                if name == "content", let parts = option.dropFirst(name.count + 1).splitOutsideQuotes(UInt8(ascii: ",")), parts.count > 1 {
                    return .snort3
                }
            }
        }
        return .snort2
    }
}

/// Snort 3's service rules, mapped onto port-based rules: a service stands for the
/// ports it usually runs on (the `<SERVICE>_PORTS` variable when the variables define
/// one, else its well-known ports), on the server's side of the flow. Snort 3 finds a
/// service by inspecting the traffic; here a service on another port is not seen.
enum ServiceRule {
    /// Service name -> (transport, variable naming its ports, default ports).
    static let services: [Substring: (SnortRule.TransportProtocol, String, String)] = [
        "http": (.tcp, "HTTP_PORTS", "[80,8080,8000,8008,8888,3128]"),
        "http2": (.tcp, "HTTP_PORTS", "[80,8080]"),
        "ssl": (.tcp, "SSL_PORTS", "[443,465,563,636,989,992,993,994,995,7801,7802,7900:7920]"),
        "smtp": (.tcp, "SMTP_PORTS", "[25,465,587,691]"),
        "ftp": (.tcp, "FTP_PORTS", "[21,2100,3535]"),
        "ftp-data": (.tcp, "FTP_DATA_PORTS", "20"),
        "ssh": (.tcp, "SSH_PORTS", "22"),
        "telnet": (.tcp, "TELNET_PORTS", "23"),
        "pop3": (.tcp, "POP3_PORTS", "110"),
        "imap": (.tcp, "IMAP_PORTS", "143"),
        "dns": (.udp, "DNS_PORTS", "53"),
        "sip": (.udp, "SIP_PORTS", "[5060,5061,5600]"),
        "netbios-ssn": (.tcp, "NETBIOS_PORTS", "139"),
        "dcerpc": (.tcp, "DCERPC_PORTS", "135"),
        "modbus": (.tcp, "MODBUS_PORTS", "502"),
        "dnp3": (.tcp, "DNP3_PORTS", "20000"),
    ]

    /// The transport and server ports of `service`; nil for a name that is no service.
    static func ports(of service: Substring, variables: RuleVariables) throws(RuleError) -> (SnortRule.TransportProtocol, PortSet)? {
        guard let (proto, variable, defaults) = services[service] else { return nil }
        let list = variables[variable] != nil ? "$\(variable)" : defaults
        return (proto, try PortSet(parsing: Substring(list), variables: variables))
    }
}
