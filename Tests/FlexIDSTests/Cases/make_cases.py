#!/usr/bin/env python3
"""Writes the Snort-semantics corpus: for each case a capture (crafted with scapy),
the rules, and the alerts Snort 2.9's manual says they raise, as (packet number, sid)
in packet order. `swift test` (SnortSemanticsCorpusTests) runs flexids over each.

    pip install scapy && python3 Tests/FlexIDSTests/Cases/make_cases.py

The expectations are written from the manual's text, quoted or paraphrased in each
case's `manual` field, never from what flexids does."""
import gzip
import json
import os
import struct
import zlib

from scapy.contrib.mpls import MPLS
from scapy.layers.inet6 import (fragment6, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment,
                                IPv6ExtHdrHopByHop)
from scapy.layers.vxlan import VXLAN
from scapy.all import (fragment, IPOption_LSRR, IPOption_NOP, IPOption_RR, Dot1AD, Dot1Q, GRE, HDLC, ICMP, IP, LLC, PPP, SNAP, TCP, UDP, Dot11, Dot11Beacon, Ether, Loopback,
                       RadioTap, Raw, wrpcap)

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENT, SERVER = "10.0.0.1", "93.184.216.34"


def tcp(payload=b"", sport=40000, dport=80, flags="PA", seq=1000, ack=1, window=8192, src=CLIENT, dst=SERVER, ipflags=0, **ip):
    return Ether() / IP(src=src, dst=dst, flags=ipflags, **ip) / TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, window=window) / Raw(payload)


def udp(payload=b"", sport=40000, dport=53, src=CLIENT, dst=SERVER, **ip):
    return Ether() / IP(src=src, dst=dst, **ip) / UDP(sport=sport, dport=dport) / Raw(payload)


def icmp(type=8, code=0, id=1, seq=1, payload=b"ping", src=CLIENT, dst=SERVER, **ip):
    return Ether() / IP(src=src, dst=dst, **ip) / ICMP(type=type, code=code, id=id, seq=seq) / Raw(payload)


CASES = []


def case(name, manual, packets, rules, expected, linktype=None, checksum_mode="all"):
    CASES.append(dict(name=name, manual=manual, packets=packets, rules=rules, expected=expected, linktype=linktype,
                      checksum_mode=checksum_mode))


# Rule actions ------------------------------------------------------------------
case("pass-rule-silences-its-packet",
     "Default order pass, drop, sdrop, reject, alert, log: only the first action group "
     "with a match is output, so a matching pass rule suppresses the packet's alerts.",
     [tcp(b"GET /evil HTTP/1.1\r\n", dport=80), tcp(b"GET /evil HTTP/1.1\r\n", dport=8080)],
     ['alert tcp any any -> any any (msg:"evil"; content:"evil"; sid:1;)',
      'pass tcp any any -> any 80 (msg:"trusted"; content:"GET"; sid:2;)'],
     [[2, 1]])
case("log-rules-raise-no-alert",
     "log: the packet is logged (log outputs only), not alerted.",
     [tcp(b"abc"), tcp(b"xyz")],
     ['log tcp any any -> any any (msg:"logged"; content:"abc"; sid:3;)',
      'alert tcp any any -> any any (msg:"alerted"; content:"xyz"; sid:4;)'],
     [[2, 4]])
case("reject-match-hides-alert-rules",
     "reject comes before alert in the order; only the first group with a match is output.",
     [tcp(b"both"), tcp(b"only alert bo")],
     ['reject tcp any any -> any any (msg:"reject"; content:"both"; sid:5;)',
      'alert tcp any any -> any any (msg:"alert"; content:"bo"; sid:6;)'],
     [[1, 5], [2, 6]])

# byte_test -----------------------------------------------------------------------
case("byte_test-operators",
     "byte_test:bytes,[!]operator,value,offset: converts bytes at offset (big endian by default) "
     "and compares; & is (v & value) != 0, ^ is (v ^ value) != 0, ! negates; value 0x.. hex, 0.. octal.",
     [udp(struct.pack(">H", 1500) + b"\x00\x08"), udp(struct.pack(">H", 80) + b"\x00\x00"),
      udp(struct.pack("<H", 1500) + b"\x00\x00")],
     ['alert udp any any -> any any (msg:"big > 1000"; byte_test:2,>,1000,0; sid:10;)',
      'alert udp any any -> any any (msg:"little = 1500"; byte_test:2,=,1500,0,little; sid:11;)',
      'alert udp any any -> any any (msg:"bit 3 set"; byte_test:1,&,8,3; sid:12;)',
      'alert udp any any -> any any (msg:"not bit 3"; byte_test:1,!&,0x08,3; sid:13;)',
      'alert udp any any -> any any (msg:"octal 010 is 8"; byte_test:1,=,010,3; sid:14;)',
      'alert udp any any -> any any (msg:"<= 80"; byte_test:2,<=,80,0; sid:15;)'],
     [[1, 10], [1, 12], [1, 14], [2, 13], [2, 15], [3, 10], [3, 11], [3, 13]])
case("byte_test-string-relative-bitmask",
     "string: the bytes are text in the base given (dec, hex, oct), read up to the first "
     "non-digit; relative: offset from the end of the previous match; bitmask: "
     "(v & mask) >> trailing zeros of mask.",
     [tcp(b"LEN:123;"), tcp(b"LEN:0x1f;"), tcp(b"LEN:abc;"), tcp(b"\x03\xf0")],
     ['alert tcp any any -> any any (msg:"dec > 100"; content:"LEN:"; byte_test:3,>,100,0,relative,string,dec; sid:20;)',
      'alert tcp any any -> any any (msg:"hex = 31"; content:"LEN:"; byte_test:4,=,31,0,relative,string,hex; sid:21;)',
      'alert tcp any any -> any any (msg:"bitmask"; byte_test:2,=,63,0,bitmask 0x3FF0; sid:22;)'],
     [[1, 20], [2, 21], [4, 22]])

# byte_jump / byte_extract ------------------------------------------------------------
case("byte_jump-moves-the-cursor",
     "byte_jump: reads bytes, then moves the cursor by value*multiplier (aligned up to 4 with "
     "align) from the end of the bytes read (or from the buffer start with from_beginning), "
     "plus post_offset; a relative content then starts there.",
     [tcp(b"\x03abcXYZ"), tcp(b"\x02abcXYZ"), tcp(b"\x01....MARK"), tcp(b"\x00\x05xyzAB")],
     ['alert tcp any any -> any any (msg:"skip 3"; byte_jump:1,0; content:"XYZ"; within:3; sid:30;)',
      'alert tcp any any -> any any (msg:"align"; byte_jump:1,0,align; content:"MARK"; within:4; sid:31;)',
      'alert tcp any any -> any any (msg:"from_beginning"; byte_jump:2,0,from_beginning,post_offset 0; content:"AB"; within:2; sid:32;)'],
     [[1, 30], [3, 31], [4, 32]])
case("byte_extract-variables",
     "byte_extract:bytes,offset,name stores the value in name, usable as content "
     "offset/depth/distance/within and byte_test value/offset; the cursor moves past the bytes read.",
     [tcp(b"\x04AAAAkey"), tcp(b"\x02AAAAkey"), tcp(b"\x07\x07rest")],
     ['alert tcp any any -> any any (msg:"distance var"; byte_extract:1,0,skip; content:"key"; distance:skip; within:3; sid:40;)',
      'alert tcp any any -> any any (msg:"value var"; byte_extract:1,0,first; byte_test:1,=,first,0,relative; sid:41;)'],
     [[1, 40], [3, 41]])

# flowbits ----------------------------------------------------------------------------
case("flowbits-across-packets",
     "flowbits:set sets the state for the flow when the rule matches; isset/isnotset test it; "
     "noalert: no event; unset clears it; state is per flow (other flows do not see it).",
     [tcp(b"LOGIN user", sport=40001), tcp(b"DATA secret", sport=40002), tcp(b"DATA secret", sport=40001),
      tcp(b"LOGOUT", sport=40001), tcp(b"DATA secret", sport=40001)],
     ['alert tcp any any -> any any (msg:"login"; content:"LOGIN"; flowbits:set,logged_in; flowbits:noalert; sid:50;)',
      'alert tcp any any -> any any (msg:"data after login"; content:"DATA"; flowbits:isset,logged_in; sid:51;)',
      'alert tcp any any -> any any (msg:"data without login"; content:"DATA"; flowbits:isnotset,logged_in; sid:52;)',
      'alert tcp any any -> any any (msg:"logout"; content:"LOGOUT"; flowbits:unset,logged_in; flowbits:noalert; sid:53;)'],
     [[2, 52], [3, 51], [5, 52]])
case("flowbits-groups-and-combinations",
     "setx sets a bit and clears the others of its group; isset a&b needs both, a|b either; "
     "isset,any,group / all,group test the group's bits.",
     [udp(b"A", sport=41000), udp(b"B", sport=41000), udp(b"C", sport=41000), udp(b"check", sport=41000)],
     ['alert udp any any -> any any (msg:"a"; content:"A"; flowbits:set,a,grp; flowbits:noalert; sid:60;)',
      'alert udp any any -> any any (msg:"b"; content:"B"; flowbits:set,b,grp; flowbits:noalert; sid:61;)',
      'alert udp any any -> any any (msg:"c"; content:"C"; flowbits:setx,c,grp; flowbits:noalert; sid:62;)',
      'alert udp any any -> any any (msg:"a and b"; content:"check"; flowbits:isset,a&b; sid:63;)',
      'alert udp any any -> any any (msg:"a or c"; content:"check"; flowbits:isset,a|c; sid:64;)',
      'alert udp any any -> any any (msg:"any of grp"; content:"check"; flowbits:isset,any,grp; sid:65;)',
      'alert udp any any -> any any (msg:"all of grp"; content:"check"; flowbits:isset,all,grp; sid:66;)'],
     [[4, 64], [4, 65]])

# header fields -------------------------------------------------------------------------
case("icmp-fields",
     "itype/icode: N, >N, <N, min<>max (exclusive); icmp_id and icmp_seq match echo "
     "request and reply only.",
     [icmp(type=8, id=1234, seq=7), icmp(type=4, code=0), icmp(type=3, code=3),
      Ether() / IP(src=CLIENT, dst=SERVER) / ICMP(type=13, id=1234, seq=1, ts_ori=0, ts_rx=0, ts_tx=0) / Raw(b"ping")],  # fixed stamps
     ['alert icmp any any -> any any (msg:"echo request"; itype:8; icode:0; sid:70;)',
      'alert icmp any any -> any any (msg:"type between 3 and 5"; itype:3<>5; sid:71;)',
      'alert icmp any any -> any any (msg:"code > 2"; icode:>2; sid:72;)',
      'alert icmp any any -> any any (msg:"id 1234"; icmp_id:1234; sid:73;)',
      'alert icmp any any -> any any (msg:"seq 7"; icmp_seq:7; sid:74;)'],
     [[1, 70], [1, 73], [1, 74], [2, 71], [3, 72]])
case("ip-fields",
     "ttl: N, <N, >N, <=N, >=N, A-B (inclusive); tos:[!]N; id:N; ip_proto:[!|<|>]N or name; "
     "fragbits: M D R with + (all of), * (any of), ! (none of); sameip: source equals destination.",
     [tcp(b"x", ttl=3, ipflags="DF"), tcp(b"x", ttl=15, tos=0x10), tcp(b"x", ttl=64, id=31337, flags="PA"),
      Ether() / IP(src=CLIENT, dst=SERVER, proto=47) / GRE() / Raw(b"gre"),
      tcp(b"x", ttl=64, flags="PA", src=CLIENT, dst=CLIENT)],
     ['alert tcp any any -> any any (msg:"ttl < 5"; ttl:<5; sid:80;)',
      'alert tcp any any -> any any (msg:"ttl 10-20"; ttl:10-20; sid:81;)',
      'alert tcp any any -> any any (msg:"tos not 0"; tos:!0; sid:82;)',
      'alert tcp any any -> any any (msg:"id"; id:31337; sid:83;)',
      'alert ip any any -> any any (msg:"gre"; ip_proto:gre; sid:84;)',
      'alert ip any any -> any any (msg:"same ip"; sameip; sid:85;)',
      'alert tcp any any -> any any (msg:"df and more"; fragbits:D+; ttl:3; sid:86;)',
      'alert tcp any any -> any any (msg:"not df"; fragbits:!D; sid:87;)'],
     [[1, 80], [1, 86], [2, 81], [2, 82], [2, 87], [3, 83], [3, 87], [4, 84], [5, 85], [5, 87]])
case("tcp-fields",
     "seq:N and ack:N compare the sequence and acknowledgement numbers; window:[!]N the window.",
     [tcp(b"x", seq=123456, ack=654321, window=0), tcp(b"x", seq=1, ack=1, window=512)],
     ['alert tcp any any -> any any (msg:"seq"; seq:123456; sid:90;)',
      'alert tcp any any -> any any (msg:"ack"; ack:654321; sid:91;)',
      'alert tcp any any -> any any (msg:"zero window"; window:0; sid:92;)',
      'alert tcp any any -> any any (msg:"nonzero window"; window:!0; sid:93;)'],
     [[1, 90], [1, 91], [1, 92], [2, 93]])

# rate and stream ---------------------------------------------------------------------
case("detection_filter-counts-before-alerting",
     "detection_filter:track by_src, count C, seconds S: the rule generates an event only "
     "once it matched more than C times from one source within S seconds.",
     [tcp(b"probe") for _ in range(4)] + [tcp(b"probe", src="10.0.0.2")],
     ['alert tcp any any -> any any (msg:"brute force"; content:"probe"; detection_filter:track by_src, count 2, seconds 60; sid:100;)'],
     [[3, 100], [4, 100]])
case("flow-stream-modifiers",
     "flow:no_stream matches packets that are not rebuilt stream data; only_stream only rebuilt "
     "stream data (a lone segment makes none).",
     [tcp(b"stream data")],
     ['alert tcp any any -> any any (msg:"no stream"; flow:no_stream; content:"stream"; sid:110;)',
      'alert tcp any any -> any any (msg:"only stream"; flow:only_stream; content:"stream"; sid:111;)'],
     [[1, 110]])

# decoding -------------------------------------------------------------------------------
SEEN = ['alert tcp any any -> any any (msg:"seen"; content:"needle"; sid:120;)']
IP_TCP = IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"a needle here")
case("link-type-bsd-loopback", "Snort decodes DLT_NULL (BSD loopback: a 4-byte address family).",
     [Loopback(type=2) / IP_TCP], SEEN, [[1, 120]], linktype=0)
case("link-type-ppp", "Snort decodes PPP (DLT_PPP), with or without HDLC-like framing.",
     [HDLC() / PPP(proto=0x21) / IP_TCP, PPP(proto=0x21) / IP_TCP], SEEN, [[1, 120], [2, 120]], linktype=9)
case("link-type-raw-ipv4", "Snort decodes raw IPv4 captures (LINKTYPE_IPV4).", [IP_TCP], SEEN, [[1, 120]], linktype=228)
case("link-type-80211-radiotap",
     "Snort decodes 802.11 data frames (LLC/SNAP) behind a radiotap header; management frames carry no IP.",
     [RadioTap() / Dot11(type=0, subtype=8, addr1="ff:ff:ff:ff:ff:ff", addr2="00:11:22:33:44:55", addr3="00:11:22:33:44:55") / Dot11Beacon(),
      RadioTap() / Dot11(type=2, subtype=0, FCfield="to_DS", addr1="00:11:22:33:44:55", addr2="66:77:88:99:aa:bb", addr3="00:11:22:33:44:55")
      / LLC() / SNAP(code=0x0800) / IP_TCP],
     SEEN, [[2, 120]], linktype=127)
case("link-type-80211-qos", "802.11 QoS data frames (subtype 8) have 2 more header bytes.",
     [Dot11(type=2, subtype=8, FCfield="to_DS", addr1="00:11:22:33:44:55", addr2="66:77:88:99:aa:bb", addr3="00:11:22:33:44:55")
      / Raw(b"\x00\x00") / LLC() / SNAP(code=0x0800) / IP_TCP],
     SEEN, [[1, 120]], linktype=105)
case("bad-checksums-are-not-inspected",
     "checksum_mode all (the default): packets with a wrong IP, TCP, UDP or ICMP checksum are not inspected.",
     [Ether() / IP(src=CLIENT, dst=SERVER, chksum=0x1234) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"a needle"),
      Ether() / IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=80, flags="PA", chksum=0x1234) / Raw(b"a needle"),
      Ether() / IP(src=CLIENT, dst=SERVER) / UDP(sport=40000, dport=53, chksum=0x1234) / Raw(b"a needle"),
      Ether() / IP(src=CLIENT, dst=SERVER) / UDP(sport=40000, dport=53, chksum=0) / Raw(b"a needle"),
      Ether() / IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"a needle")],
     ['alert ip any any -> any any (msg:"seen"; content:"needle"; sid:121;)'], [[4, 121], [5, 121]])
case("checksum-mode-none-inspects-everything",
     "checksum_mode none: checksums are not verified; every packet is inspected.",
     [Ether() / IP(src=CLIENT, dst=SERVER, chksum=0x1234) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"a needle"),
      Ether() / IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=80, flags="PA", chksum=0x1234) / Raw(b"a needle")],
     ['alert ip any any -> any any (msg:"seen"; content:"needle"; sid:122;)'], [[1, 122], [2, 122]], checksum_mode="none")
case("bad-tcp-header-still-meets-ip-rules",
     "A packet whose TCP header does not decode (data offset below 5) is still an IP packet: ip rules see it, tcp rules do not.",
     [Ether() / IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=80, flags="PA", dataofs=2) / Raw(b"x")],
     ['alert ip any any -> any any (msg:"ip"; ip_proto:6; sid:123;)', 'alert tcp any any -> any any (msg:"tcp"; sid:124;)'],
     [[1, 123]])

# IPv4 reassembly (frag3) ------------------------------------------------------------------
def split_tcp(payload, ident, fragsize=16):
    whole = IP(src=CLIENT, dst=SERVER, id=ident) / TCP(sport=40000, dport=80, flags="PA") / Raw(payload)
    return [Ether() / f for f in fragment(IP(bytes(whole)), fragsize=fragsize)]


def ip_fragment(ident, offset, data, more):
    return Ether() / IP(src=CLIENT, dst=SERVER, id=ident, proto=6, flags="MF" if more else 0, frag=offset // 8) / Raw(data)


SPLIT = split_tcp(b"GET /some/attack/path HTTP/1.0\r\n", 1)
case("fragmented-content-is-found-after-reassembly",
     "frag3 rebuilds the datagram when its last missing fragment arrives and detection runs on "
     "the rebuilt packet, reported as the completing fragment; fragments themselves meet no "
     "content rules; arrival order does not matter.",
     SPLIT + list(reversed(split_tcp(b"GET /some/attack/path HTTP/1.0\r\n", 2))),
     ['alert tcp any any -> any 80 (msg:"attack"; content:"attack"; sid:130;)'],
     [[4, 130], [8, 130]])
T = bytes((IP(src=CLIENT, dst=SERVER) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"BBBBBBBBCCCCCCCCDDDD"))[TCP])
case("fragment-overlaps-follow-the-bsd-policy",
     "frag3's default policy is bsd: new data wins over data of a fragment that started at a higher "
     "offset; a fragment starting at the same offset as one held keeps the old data; header-only "
     "rules (fragbits) see each fragment, and a rule that alerted on a fragment does not alert again "
     "on the rebuilt datagram.",
     [ip_fragment(7, 24, b"AAAAAAAA", True), ip_fragment(7, 0, T[0:32], True), ip_fragment(7, 32, T[32:40], False),
      ip_fragment(8, 0, T[0:32], True), ip_fragment(8, 0, T[0:24] + b"ZZZZZZZZ", True), ip_fragment(8, 32, T[32:40], False)],
     ['alert tcp any any -> any 80 (msg:"rebuilt right"; content:"BBBBCCCC"; sid:131;)',
      'alert ip any any -> any any (msg:"more fragments"; fragbits:M+; sid:132;)',
      'alert tcp any any -> any 80 (msg:"losing data"; content:"AAAA"; sid:133;)',
      'alert tcp any any -> any 80 (msg:"losing data"; content:"ZZZZ"; sid:134;)'],
     [[1, 132], [2, 132], [3, 131], [4, 132], [5, 132], [6, 131]])

# HTTP normalization ------------------------------------------------------------------
case("http_uri-is-normalized",
     "http_inspect (profile all) normalizes the URI for http_uri: %XX and %uXXXX decoded (twice), "
     "\\ as /, multiple slashes as one, /./ and /dir/../ removed; http_raw_uri is the URI as sent; "
     "urilen measures the raw URI unless given norm.",
     [tcp(b"GET /scripts/..%5c../winnt/system32/cmd.exe?/c+dir HTTP/1.0\r\nHost: x\r\n\r\n"),
      tcp(b"GET /%u002e%u002e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", sport=40001)],
     ['alert tcp any any -> any 80 (msg:"cmd.exe"; content:"/winnt/system32/cmd.exe"; http_uri; sid:140;)',
      'alert tcp any any -> any 80 (msg:"encoded as sent"; content:"..%5c.."; http_raw_uri; sid:141;)',
      'alert tcp any any -> any 80 (msg:"encoded, normalized"; content:"..%5c.."; http_uri; sid:142;)',
      'alert tcp any any -> any 80 (msg:"passwd"; content:"/etc/passwd"; http_uri; sid:143;)',
      'alert tcp any any -> any 80 (msg:"short normalized"; urilen:<12,norm; sid:144;)',
      'alert tcp any any -> any 80 (msg:"long raw"; urilen:>20; sid:145;)'],
     [[1, 140], [1, 141], [1, 145], [2, 143], [2, 144], [2, 145]])

# tunnels ------------------------------------------------------------------------------------
OUTER = dict(src="192.0.2.1", dst="192.0.2.2")
case("tunnels-are-opened",
     "Snort's decoder looks through QinQ, MPLS, GRE (IPv4 or Ethernet inside, with key, checksum "
     "or sequence fields), IPv4-in-IPv4 and VXLAN: rules see the packet inside.",
     [Ether() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IP_TCP,
      Ether(type=0x8847) / MPLS(label=100, s=0) / MPLS(label=200, s=1) / IP_TCP,
      Ether() / IP(**OUTER) / GRE() / IP_TCP,
      Ether() / IP(**OUTER) / GRE(key_present=1, key=7, seqnum_present=1, seqence_number=3) / IP_TCP,
      Ether() / IP(**OUTER) / GRE(proto=0x6558) / Ether() / IP_TCP,
      Ether() / IP(**OUTER, proto=4) / IP_TCP,
      Ether() / IP(**OUTER) / UDP(sport=50000, dport=4789) / VXLAN(vni=42) / Ether() / IP_TCP,
      Ether() / IP(**OUTER) / GRE() / IP(**OUTER) / GRE() / IP_TCP],
     ['alert tcp any any -> any 80 (msg:"inner"; content:"needle"; sid:150;)'],
     [[k, 150] for k in range(1, 9)])


# IPv6 ---------------------------------------------------------------------------------------
V6C, V6S = "2001:db8::1", "2001:db8:0:1::80"
V6_TCP = IPv6(src=V6C, dst=V6S) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"a needle here")
case("ipv6-packets-are-inspected",
     "Snort decodes IPv6; rule headers take IPv6 addresses and CIDR blocks; any matches either "
     "family, an IPv4 block matches IPv4 only (so its negation includes every IPv6 address); ttl "
     "tests the hop limit.",
     [Ether() / V6_TCP, tcp(b"a needle here")],
     ['alert tcp any any -> any 80 (msg:"any"; content:"needle"; sid:160;)',
      'alert tcp [2001:db8::/32] any -> any any (msg:"v6 block"; content:"needle"; sid:161;)',
      'alert tcp 10.0.0.0/8 any -> any any (msg:"v4 block"; content:"needle"; sid:162;)',
      'alert tcp !10.0.0.0/8 any -> any any (msg:"not v4 block"; content:"needle"; sid:163;)',
      'alert ip 2001:db8::1 any -> [2001:db8:0:1::/64,192.0.2.1] any (msg:"hop limit"; ttl:64; sid:164;)'],
     [[1, 160], [1, 161], [1, 163], [1, 164], [2, 160], [2, 162]])
case("ipv6-extension-headers-are-walked",
     "The decoder steps over hop-by-hop, destination options and routing headers to the upper layer; "
     "ip_proto names the upper-layer protocol.",
     [Ether() / IPv6(src=V6C, dst=V6S) / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / TCP(sport=40000, dport=80, flags="PA")
      / Raw(b"a needle here")],
     ['alert tcp any any -> any 80 (msg:"needle"; content:"needle"; sid:165;)',
      'alert ip any any -> any any (msg:"tcp inside"; ip_proto:6; sid:166;)'],
     [[1, 165], [1, 166]])
V6_WHOLE = IPv6(src=V6C, dst=V6S) / IPv6ExtHdrFragment(id=77) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"GET /some/attack/path HTTP/1.0\r\n" * 3)
V6_FRAGMENTS = [Ether() / f for f in fragment6(V6_WHOLE, 80)]
case("ipv6-fragments-are-reassembled",
     "frag3 reassembles IPv6 fragments (the fragment header's identification keys the datagram) "
     "and detection runs on the rebuilt packet, reported as the completing fragment, in any order.",
     V6_FRAGMENTS + [f.copy() for f in reversed(V6_FRAGMENTS)],
     ['alert tcp any any -> any 80 (msg:"attack"; content:"path HTTP/1.0|0d 0a|GET"; sid:167;)'],
     [[len(V6_FRAGMENTS), 167], [2 * len(V6_FRAGMENTS), 167]])
V6_OPTS_WHOLE = (IPv6(src=V6C, dst=V6S) / IPv6ExtHdrFragment(id=78) / IPv6ExtHdrDestOpt() / TCP(sport=40001, dport=80, flags="PA")
                 / Raw(b"GET /some/attack/path HTTP/1.0\r\n" * 3))
V6_OPTS_FRAGMENTS = [Ether() / f for f in fragment6(V6_OPTS_WHOLE, 80)]
case("ipv6-fragments-with-options-after-the-fragment-header",
     "Extension headers after the fragment header are part of the fragmentable data: the datagram "
     "is rebuilt from all its fragments and inspected whole.",
     V6_OPTS_FRAGMENTS,
     ['alert tcp any any -> any 80 (msg:"attack"; content:"path HTTP/1.0|0d 0a|GET"; sid:168;)'],
     [[len(V6_OPTS_FRAGMENTS), 168]])
case("icmpv6-fields",
     "icmp rules and itype, icode, icmp_id, icmp_seq apply to ICMPv6 (echo request is type 128); "
     "ip_proto 58 is ICMPv6.",
     [Ether() / IPv6(src=V6C, dst=V6S) / ICMPv6EchoRequest(id=7, seq=3, data=b"ping")],
     ['alert icmp any any -> any any (msg:"echo"; itype:128; icode:0; icmp_id:7; icmp_seq:3; sid:170;)',
      'alert ip any any -> any any (msg:"icmpv6"; ip_proto:58; sid:171;)',
      'alert icmp any any -> any any (msg:"ICMPv4 echo"; itype:8; sid:172;)'],
     [[1, 170], [1, 171]])
case("ipv6-tunnels-are-opened",
     "The decoder looks through 6in4 (IPv4 protocol 41), IPv4 and IPv6 in IPv6, GRE carrying IPv6, "
     "Teredo (UDP port 3544) and MPLS over IPv6: rules see the packet inside.",
     [Ether() / IP(**OUTER, proto=41) / V6_TCP,
      Ether() / IPv6(src="2001:db8:ffff::1", dst="2001:db8:ffff::2", nh=4) / IP_TCP,
      Ether() / IPv6(src="2001:db8:ffff::1", dst="2001:db8:ffff::2", nh=41) / V6_TCP,
      Ether() / IP(**OUTER) / GRE(proto=0x86DD) / V6_TCP,
      Ether() / IP(**OUTER) / UDP(sport=3544, dport=50000) / V6_TCP,
      Ether(type=0x8847) / MPLS(label=100, s=1) / V6_TCP],
     ['alert tcp any any -> any 80 (msg:"inner"; content:"needle"; sid:175;)'],
     [[k, 175] for k in range(1, 7)])
case("ipv6-checksums",
     "checksum_mode all: IPv6 TCP, UDP and ICMPv6 checksums cover the pseudo-header; a wrong one, "
     "or a zero UDP checksum (not allowed over IPv6), leaves the packet uninspected.",
     [Ether() / IPv6(src=V6C, dst=V6S) / TCP(sport=40000, dport=80, flags="PA", chksum=0x1234) / Raw(b"a needle"),
      Ether() / IPv6(src=V6C, dst=V6S) / UDP(sport=40000, dport=53, chksum=0) / Raw(b"a needle"),
      Ether() / IPv6(src=V6C, dst=V6S) / UDP(sport=40000, dport=53) / Raw(b"a needle"),
      Ether() / IPv6(src=V6C, dst=V6S) / TCP(sport=40000, dport=80, flags="PA") / Raw(b"a needle")],
     ['alert ip any any -> any any (msg:"seen"; content:"needle"; sid:176;)'], [[3, 176], [4, 176]])
case("link-type-raw-ipv6", "Snort decodes raw IPv6 captures (LINKTYPE_IPV6).", [V6_TCP], SEEN, [[1, 120]], linktype=229)


# TCP stream reassembly (stream5) -------------------------------------------------------------
def session(client_segments, server_reply=b"HTTP/1.1 200 OK\r\n\r\n", sport=40000, dport=80, isn=1000):
    """A handshake, the client's segments (payload, offset from the first data byte),
    then the server's reply."""
    out = [tcp(flags="S", seq=isn, ack=0, sport=sport, dport=dport),
           tcp(flags="SA", seq=5000, ack=isn + 1, src=SERVER, dst=CLIENT, sport=dport, dport=sport),
           tcp(flags="A", seq=isn + 1, ack=5001, sport=sport, dport=dport)]
    out += [tcp(data, flags="PA", seq=isn + 1 + at, ack=5001, sport=sport, dport=dport) for data, at in client_segments]
    out.append(tcp(server_reply, flags="PA", seq=5001, ack=isn + 1 + 64, src=SERVER, dst=CLIENT, sport=dport, dport=sport))
    return out


case("stream-content-split-across-segments",
     "stream5 reassembles the client side of a session (its default ports client list has 80) and the "
     "rebuilt packet is inspected too: content split across segments is found, and the request line "
     "split in two still yields http_method and http_uri. Alerts name the segment that completed the "
     "data; only_stream rules see only rebuilt data, no_stream rules only packets as they came.",
     session([(b"GET /ev", 0), (b"il.php HTTP/1.1\r\nHost: x\r\n\r\n", 7)]),
     ['alert tcp any any -> any 80 (msg:"split"; flow:to_server,established; content:"evil.php"; sid:180;)',
      'alert tcp any any -> any 80 (msg:"method and uri"; content:"GET"; http_method; content:"/evil.php"; http_uri; sid:181;)',
      'alert tcp any any -> any 80 (msg:"only stream"; flow:only_stream; content:"GET /evil"; sid:182;)',
      'alert tcp any any -> any 80 (msg:"no stream"; flow:no_stream; content:"evil"; sid:183;)',
      'alert tcp any any -> any 80 (msg:"raw GET"; flow:no_stream; content:"GET /ev"; sid:184;)'],
     [[4, 184], [5, 180], [5, 181], [5, 182]])
case("stream-out-of-order-and-overlaps",
     "Segments are put in sequence order whatever order they arrive in; where a retransmission "
     "overlaps data already received, the data received first stays (the rebuilt stream never shows "
     "the second copy).",
     session([(b"BBBBCCCC", 8), (b"AAAAAAAA", 0), (b"ZZZZZZZZ", 4), (b"DDDD", 16)]),
     ['alert tcp any any -> any 80 (msg:"in order"; flow:only_stream; content:"AAAAAAAABBBBCCCCDDDD"; sid:185;)',
      'alert tcp any any -> any 80 (msg:"overlap lost"; flow:only_stream; content:"ZZZZ"; sid:186;)'],
     [[7, 185]])
case("stream-server-side-is-not-reassembled",
     "stream5's default reassembles the client side only: content split across server segments is "
     "not found, and a session to a port outside the ports client list is not reassembled.",
     session([(b"GE", 0), (b"T /x", 2)], sport=40001, dport=8081)
     + [tcp(b"resp", flags="PA", seq=5001, ack=1007, src=SERVER, dst=CLIENT, sport=80, dport=40002),
        tcp(b"onse", flags="PA", seq=5005, ack=1007, src=SERVER, dst=CLIENT, sport=80, dport=40002)],
     ['alert tcp any any -> any any (msg:"split GET"; content:"GET /x"; sid:187;)',
      'alert tcp any any -> any any (msg:"split response"; content:"response"; sid:188;)'],
     [])


# HTTP bodies -----------------------------------------------------------------------------------
PAGE = b"<html><script>document.write('evil-script-marker')</script></html>" + b" " * 200


def chunked(data, size=50):
    out = b""
    for i in range(0, len(data), size):
        part = data[i:i + size]
        out += b"%x\r\n" % len(part) + part + b"\r\n"
    return out + b"0\r\n\r\n"


def response(body, headers=b""):
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n" + headers + b"\r\n" + body


GZ = gzip.compress(PAGE, mtime=0)
case("http-bodies-are-dechunked-and-inflated",
     "http_inspect (inspect_gzip, the default configuration) removes the chunked transfer coding "
     "and decompresses gzip and deflate bodies before file_data (and http_client_body) see them; "
     "a body without such headers is seen as it came.",
     [tcp(response(GZ, b"Content-Encoding: gzip\r\n"), src=SERVER, dst=CLIENT, sport=80, dport=40000),
      tcp(response(chunked(GZ), b"Transfer-Encoding: chunked\r\nContent-Encoding: gzip\r\n"), src=SERVER, dst=CLIENT, sport=80, dport=40001),
      tcp(response(zlib.compress(PAGE), b"Content-Encoding: deflate\r\n"), src=SERVER, dst=CLIENT, sport=80, dport=40002),
      tcp(response(chunked(PAGE, 7), b"Transfer-Encoding: chunked\r\n"), src=SERVER, dst=CLIENT, sport=80, dport=40003),
      tcp(response(GZ), src=SERVER, dst=CLIENT, sport=80, dport=40004),
      tcp(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(b"name=evil-payload-here", 4), sport=40005)],
     ['alert tcp any 80 -> any any (msg:"script in body"; file_data; content:"evil-script-marker"; sid:195;)',
      'alert tcp any any -> any 80 (msg:"client body"; content:"evil-payload"; http_client_body; sid:196;)',
      'alert tcp any 80 -> any any (msg:"raw bytes"; content:"evil-script-marker"; sid:197;)'],
     [[1, 195], [2, 195], [3, 195], [4, 195], [6, 196]])

case("http-pipelined-requests",
     "http_inspect decodes pipelined requests (no_pipeline_req is off by default): each request in "
     "a packet has its own URI, method and body buffers; a request's body is its Content-Length's "
     "bytes, so the next request is not part of it.",
     [tcp(b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nGET /second-evil HTTP/1.1\r\nHost: x\r\n\r\n"),
      tcp(b"POST /form HTTP/1.1\r\nContent-Length: 5\r\n\r\na=b&cGET /third HTTP/1.1\r\nHost: x\r\n\r\n", sport=40001)],
     ['alert tcp any any -> any 80 (msg:"second uri"; content:"/second-evil"; http_uri; sid:198;)',
      'alert tcp any any -> any 80 (msg:"first uri"; content:"GET"; http_method; content:"/first"; http_uri; sid:199;)',
      'alert tcp any any -> any 80 (msg:"third uri"; content:"/third"; http_uri; sid:200;)',
      'alert tcp any any -> any 80 (msg:"body"; content:"a=b&c"; http_client_body; sid:201;)',
      'alert tcp any any -> any 80 (msg:"body is bounded"; content:"GET /third"; http_client_body; sid:202;)'],
     [[1, 198], [1, 199], [2, 200], [2, 201]])


# base64_decode / base64_data ---------------------------------------------------------
NTLM = b"TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw=="  # NTLMSSP negotiate


def http_get(headers):
    return tcp(b"GET / HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")


case("base64_decode-and-base64_data",
     "base64_decode[:bytes N, offset N, relative] decodes base64 from the payload or (relative) from where "
     "the last match ended, plus offset; bytes limits how many encoded bytes are decoded; the data is unfolded "
     "first (a line folded with CRLF and whitespace goes on; the header's end ends it). base64_data puts the "
     "cursor at the start of the decoded buffer for the options after it, and fails if nothing was decoded. "
     "The manual's examples are rules 200, 201 and 204.",
     [http_get(b"Authorization: NTLM " + NTLM + b"\r\n"),
      http_get(b"Authorization: NTLM " + NTLM[:8] + b"\r\n " + NTLM[8:] + b"\r\n"),
      http_get(b"Authorization: NTLM " + NTLM[:8] + b"\r\n" + NTLM[8:] + b": x\r\n"),
      udp(b"eHggZm9vIGJhcg=="),  # "xx foo bar"
      udp(b"!!!! ????"),
      udp(b"X-Data: =AAA end"),
      udp(b"X-Data: QUFB end")],
     ['alert tcp any any -> any any (msg:"Authorization NTLM"; content:"Authorization:"; http_header; '
      'base64_decode:bytes 12, offset 6, relative; base64_data; content:"NTLMSSP"; within:8; sid:200;)',
      'alert tcp any any -> any any (msg:"Authorization NTLM"; content:"Authorization: NTLM"; '
      'base64_decode:relative; base64_data; content:"NTLMSSP"; sid:201;)',
      'alert tcp any any -> any any (msg:"decoded up to the header end"; content:"NTLM"; base64_decode:relative; '
      'base64_data; content:"NTLMSS"; depth:6; sid:202;)',
      'alert udp any any -> any any (msg:"undecodable"; content:"X-Data: "; base64_decode:relative; content:"end"; sid:203;)',
      'alert udp any any -> any any (msg:"Base64 Encoded Data"; base64_decode; base64_data; content:"foo bar"; within:20; sid:204;)'],
     [[1, 200], [1, 201], [1, 202], [2, 200], [2, 201], [2, 202], [3, 202], [4, 204], [7, 203]])

# asn1 ----------------------------------------------------------------------------------
REAL_DECIMAL = b"\x09\x82\x01\x2c\x03" + b"1" * 299  # REAL, 300 bytes, ISO 6093 (decimal) form
REAL_BINARY = b"\x09\x82\x01\x2c\x80" + b"\x01" * 299
case("asn1-encodings",
     "asn1 decodes the BER data at absolute_offset (from the payload's start) or relative_offset (from the "
     "last match) and matches if any element has an encoding it names: bitstring_overflow, a BIT STRING whose "
     "unused-bits count exceeds its bits; double_overflow, a REAL in ASCII (decimal) form longer than 256 "
     "bytes; oversize_length N, an element's length greater than N (Snort's code: N or more; no packet here "
     "is at the boundary). Constructed elements (SEQUENCE, also "
     "of indefinite length) are decoded into. The manual's examples are rules 212 and 213.",
     [udp(b"\x30\x07\x02\x01\x01\x03\x02\x20\xff", dport=161),  # 32 unused bits of 8
      udp(b"\x30\x07\x02\x01\x01\x03\x02\x07\x80", dport=161),  # 7 unused of 8: fine
      udp(REAL_DECIMAL, dport=161),
      udp(REAL_BINARY, dport=161),
      udp(b"\x04\x82\x03\xe8" + b"A" * 10, dport=161),  # OCTET STRING of 1000 bytes, 10 sent
      tcp(b"foo\x03\x02\x20\xff", dport=80),
      tcp(b"foo\x03\x02\x07\x80", dport=80),
      udp(b"\x30\x80\x03\x02\x20\xff\x00\x00", dport=161)],  # indefinite-length SEQUENCE
     ['alert udp any any -> any 161 (msg:"bitstring"; asn1:bitstring_overflow, absolute_offset 0; sid:210;)',
      'alert udp any any -> any 161 (msg:"double"; asn1:double_overflow, absolute_offset 0; sid:211;)',
      'alert udp any any -> any 161 (msg:"Oversize SNMP Length"; asn1:oversize_length 500, absolute_offset 0; sid:212;)',
      'alert tcp any any -> any 80 (msg:"ASN1 Relative Foo"; content:"foo"; asn1:bitstring_overflow, relative_offset 0; sid:213;)'],
     [[1, 210], [3, 211], [5, 212], [6, 213], [8, 210]])

# ftpbounce -----------------------------------------------------------------------------
case("ftpbounce-port-to-another-host",
     "ftpbounce detects FTP bounce attacks: a PORT command (argument h1,h2,h3,h4,p1,p2 after the match) "
     "that names an address other than the client's own. The manual's example rule, without its flow option.",
     [tcp(b"PORT 10,0,0,1,4,1\r\n", dport=21),
      tcp(b"PORT 192,168,1,5,0,21\r\n", dport=21),
      tcp(b"port 192,168,1,5,0,21\r\n", dport=21),
      tcp(b"PORT 192,168,1\r\n", dport=21),
      tcp(b"PORT 300,1,1,1,0,21\r\n", dport=21)],
     ['alert tcp any any -> any 21 (msg:"FTP PORT bounce attempt"; content:"PORT"; nocase; ftpbounce; '
      'pcre:"/^PORT/smi"; classtype:misc-attack; sid:220;)'],
     [[2, 220], [3, 220]])


# byte_math -----------------------------------------------------------------------------
case("byte_math-results-as-variables",
     "byte_math: bytes, offset, oper (+ - * / << >>), rvalue, result: extracts bytes at offset (relative to "
     "the last match with relative; string dec reads text), applies the operator with rvalue and stores the "
     "result in the result variable, which later options use. The manual's example is rule 250: extract 2 "
     "bytes at offset 0, multiply by 10, and use the result in byte_test.",
     [udp(b"\x00\x05" + b"x" * 14 + b"\x00\x33"),
      udp(b"\x00\x05" + b"x" * 14 + b"\x00\x32"),
      udp(b"\x00\x05xxx"),
      udp(b"len=100" + b"y" * 30),
      udp(b"len=400" + b"y" * 30)],
     ['alert udp any any -> any any (msg:"byte_math"; byte_math:bytes 2, offset 0, oper *, rvalue 10, result area; '
      'byte_test:2,>,area,16; sid:250;)',
      'alert udp any any -> any any (msg:"a quarter of len"; content:"len="; byte_math:bytes 3, offset 0, oper /, '
      'rvalue 4, result q, relative, string dec; isdataat:q,relative; sid:251;)'],
     [[1, 250], [4, 251]])

# ipopts ------------------------------------------------------------------------------
case("ipopts-names-an-ip-option",
     "ipopts: rr (record route), lsrr (loose source routing), nop, ... and any (any option is set): the "
     "IPv4 header carries that option.",
     [Ether() / IP(src=CLIENT, dst=SERVER, options=[IPOption_RR(routers=["0.0.0.0"])]) / TCP(sport=40000, dport=80) / Raw(b"x"),
      # ICMP: a TCP or UDP checksum over a source route covers the route's last hop, not the header's destination
      Ether() / IP(src=CLIENT, dst=SERVER, options=[IPOption_LSRR(routers=["1.2.3.4"])]) / ICMP() / Raw(b"x"),
      tcp(b"x"),
      Ether() / IP(src=CLIENT, dst=SERVER, options=[IPOption_NOP()] * 4) / TCP(sport=40000, dport=80) / Raw(b"x")],
     ['alert ip any any -> any any (msg:"record route"; ipopts:rr; sid:240;)',
      'alert ip any any -> any any (msg:"loose source route"; ipopts:lsrr; sid:241;)',
      'alert ip any any -> any any (msg:"any option"; ipopts:any; sid:242;)',
      'alert ip any any -> any any (msg:"nop"; ipopts:nop; sid:243;)'],
     [[1, 240], [1, 242], [2, 241], [2, 242], [4, 242], [4, 243]])

# stream_size ---------------------------------------------------------------------------
case("stream_size-counts-by-sequence-numbers",
     "stream_size:<server|client|both|either>,<operator>,<number>: the number of bytes the stream's side(s) "
     "sent, as determined by the TCP sequence numbers; both requires both sides, either one of them.",
     session([(b"hello", 0), (b"world!", 5)], server_reply=b"ok", dport=9999),
     ['alert tcp any any -> any any (msg:"client over 10"; stream_size:client,>,10; content:"world"; sid:230;)',
      'alert tcp any any -> any any (msg:"client under 10"; stream_size:client,<,10; content:"hello"; sid:231;)',
      'alert tcp any any -> any any (msg:"server under 5"; stream_size:server,<,5; content:"ok"; sid:232;)',
      'alert tcp any any -> any any (msg:"both over 100"; stream_size:both,>,100; content:"ok"; sid:233;)',
      'alert tcp any any -> any any (msg:"either over 10"; stream_size:either,>,10; content:"ok"; sid:234;)',
      'alert udp any any -> any any (msg:"not a TCP stream"; stream_size:either,>=,0; sid:235;)'],
     [[4, 231], [5, 230], [6, 232], [6, 234]])

case("replace-changes-nothing-in-ids-mode",
     "replace substitutes the matched content in inline mode only; otherwise the rule alerts as without it.",
     [tcp(b"the secret is out")],
     ['alert tcp any any -> any any (msg:"replace"; content:"secret"; replace:"XXXXXX"; sid:260;)'],
     [[1, 260]])


# rpc -----------------------------------------------------------------------------------
def rpc_call(program, version, procedure, msg_type=0, rpc_version=2):
    return struct.pack(">IIIIII", 0x1234, msg_type, rpc_version, program, version, procedure) + b"\x00" * 8


case("rpc-calls",
     "rpc: application number, [version number|*], [procedure number|*]: the packet is an RPC call to that "
     "application (and version and procedure; * is any). Over TCP the call follows the 4-byte record mark.",
     [udp(rpc_call(100000, 2, 4), dport=111),
      udp(rpc_call(100000, 3, 4), dport=111),
      udp(rpc_call(100000, 2, 4, msg_type=1), dport=111),  # a reply
      tcp(b"\x80\x00\x00\x28" + rpc_call(100005, 1, 1), dport=111)],
     ['alert udp any any -> any 111 (msg:"portmap v2 dump"; rpc:100000,2,4; sid:270;)',
      'alert ip any any -> any 111 (msg:"portmap any"; rpc:100000,*,*; sid:271;)',
      'alert tcp any any -> any 111 (msg:"mountd"; rpc:100005,*,1; sid:272;)'],
     [[1, 270], [1, 271], [2, 271], [4, 272]])


# Snort 3 rule syntax --------------------------------------------------------------------------
REQUEST = b"GET /evil.php HTTP/1.1\r\nHost: x\r\nUser-Agent: evil-agent\r\n\r\n"
case("snort3-sticky-buffers-and-service-rules",
     "Snort 3: a buffer keyword (http_uri, http_header, pkt_data, ...) sets the buffer for the contents "
     "after it until another is set; content modifiers go inside the option (content:\"x\", nocase, "
     "offset 1, depth 5); `alert http (...)` is a service rule for HTTP traffic (here: HTTP's ports), "
     "and a rule's options may span lines.",
     [tcp(REQUEST), tcp(REQUEST, dport=9999)],
     ['alert http (msg:"uri"; http_uri; content:"/EVIL.php", nocase; sid:190;)',
      'alert http (msg:"method is POST"; http_method; content:"POST"; http_uri; content:"/evil"; sid:191;)',
      'alert tcp any any -> any 80 (msg:"raw then header"; content:"GET", depth 3; http_header; content:"evil-agent"; service:http; sid:192;)',
      'alert http any any -> any any (\n    msg:"inside the uri";\n    http_uri; content:"evil", offset 1, depth 5;\n    sid:193;\n)',
      'alert http (msg:"sticky, not modifying"; content:"evil-agent"; http_uri; content:"Host"; sid:194;)'],
     [[1, 190], [1, 192], [1, 193]])


def main():
    index = []
    for c in CASES:
        pcap = c["name"] + ".pcap"
        for i, p in enumerate(c["packets"]):
            p.time = 1_700_000_000 + i  # a second apart
        wrpcap(os.path.join(HERE, pcap), c["packets"], linktype=c["linktype"])
        index.append(dict(name=c["name"], manual=c["manual"], capture=pcap, rules=c["rules"], expected=c["expected"],
                          checksum_mode=c["checksum_mode"]))
    with open(os.path.join(HERE, "cases.json"), "w") as f:
        json.dump(index, f, indent=1)
        f.write("\n")
    print(f"wrote {len(index)} cases")


if __name__ == "__main__":
    main()
