// FlexKVS reply offload in XDP (after BMC, NSDI '21, and Santa): a memcached UDP
// request that is one datagram holding exactly `get <key>\r\n` is answered from the
// `replies` map, before the network stack, with XDP_TX; everything else passes to the
// server. flexkvs fills the map with hot keys' replies (VALUE ... END) and deletes a
// key's entry before it acknowledges any change to the key, so no reply sent from here
// is older than the last acknowledged write.
//
// Compiled with clang's bpf target at build time (FlexKVS's BPFProgramPlugin); loaded
// and attached with libbpf by XDPReplyOffload.swift. The map layouts below are that
// file's too: change both together.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_KEY 250
#define MAX_REPLY 1024
#define FRAME_HEADER 8

/// A key as the map holds it: its length, then its bytes, zero-padded.
struct reply_key {
    __u32 length;
    __u8 bytes[252];
};

/// A reply body (VALUE <key> <flags> <bytes>\r\n<data>\r\nEND\r\n) and its length.
struct reply_value {
    __u32 length;
    __u8 bytes[MAX_REPLY];
};

/// The server's IPv4 address (network order; 0: any) and UDP port (host order).
struct offload_config {
    __u32 address;
    __u32 port;
};

enum counter {
    COUNTER_HITS,        // answered here
    COUNTER_MISSES,      // a single-key get whose key the map does not hold
    COUNTER_NO_ROOM,     // a hit the frame could not grow to carry: passed to the server
    COUNTER_COUNT
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 8192);
    __uint(map_flags, BPF_F_NO_PREALLOC);  // an entry is freed after readers are done with it
    __type(key, struct reply_key);
    __type(value, struct reply_value);
} replies SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct offload_config);
} config SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, COUNTER_COUNT);
    __type(key, __u32);
    __type(value, __u64);
} counters SEC(".maps");

/// Scratch for the key being looked up (too big for the stack with the rest).
struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct reply_key);
} scratch SEC(".maps");

static __always_inline void count(__u32 which) {
    __u64 *c = bpf_map_lookup_elem(&counters, &which);
    if (c) *c += 1;
}

static __always_inline __u16 ipv4_checksum(struct iphdr *ip) {
    __u32 sum = 0;
    __u16 *words = (__u16 *)ip;
#pragma unroll
    for (int i = 0; i < 10; i++) sum += words[i];
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)~sum;
}

SEC("xdp")
int kvs_reply_offload(struct xdp_md *ctx) {
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct iphdr *ip = data + sizeof(*eth);
    struct udphdr *udp = (void *)(ip + 1);
    __u8 *payload = (__u8 *)(udp + 1);
    if ((void *)(payload + FRAME_HEADER + 4) > end) return XDP_PASS;
    if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->ihl != 5 || ip->protocol != IPPROTO_UDP) return XDP_PASS;
    // The datagram ends where UDP says, not at the frame's end (NICs pad short frames).
    void *datagram_end = (void *)udp + bpf_ntohs(udp->len);
    if (datagram_end > end) return XDP_PASS;
    if (ip->frag_off & bpf_htons(0x3fff)) return XDP_PASS;  // a fragment
    __u32 zero = 0;
    struct offload_config *cfg = bpf_map_lookup_elem(&config, &zero);
    if (!cfg || cfg->port == 0 || udp->dest != bpf_htons((__u16)cfg->port)) return XDP_PASS;
    if (cfg->address != 0 && ip->daddr != cfg->address) return XDP_PASS;
    // Frame header: request id, sequence 0, total 1, reserved; then "get ".
    if (payload[2] | payload[3] | payload[4] | payload[6] | payload[7] || payload[5] != 1) return XDP_PASS;
    __u8 *line = payload + FRAME_HEADER;
    if (line[0] != 'g' || line[1] != 'e' || line[2] != 't' || line[3] != ' ') return XDP_PASS;
    __u8 *k = line + 4;

    struct reply_key *key = bpf_map_lookup_elem(&scratch, &zero);
    if (!key) return XDP_PASS;
    __builtin_memset(key, 0, sizeof(*key));
    __u32 n = 0;
    for (__u32 i = 0; i < MAX_KEY + 1; i++) {
        if ((void *)(k + i + 2) > end) return XDP_PASS;  // this byte and the next
        __u8 c = k[i];
        if (c == '\r') {
            // The line ends the datagram: "\r\n" right after the key.
            if (k[i + 1] != '\n' || (void *)(k + i + 2) != datagram_end) return XDP_PASS;
            break;
        }
        if (c <= ' ' || c == 0x7f || i == MAX_KEY) return XDP_PASS;  // another key, a control byte, too long
        key->bytes[i] = c;
        n = i + 1;
    }
    if (n == 0) return XDP_PASS;
    key->length = n;

    struct reply_value *value = bpf_map_lookup_elem(&replies, key);
    if (!value) {
        count(COUNTER_MISSES);
        return XDP_PASS;
    }
    __u32 length = value->length;
    if (length == 0 || length > MAX_REPLY) return XDP_PASS;

    // Resize the datagram to the reply: at its tail if the frame has room there, else
    // at its head (XDP guarantees 256 bytes of headroom); then write every header anew.
    __u8 client_mac[ETH_ALEN], server_mac[ETH_ALEN];
    __builtin_memcpy(client_mac, eth->h_source, ETH_ALEN);
    __builtin_memcpy(server_mac, eth->h_dest, ETH_ALEN);
    __u32 client = ip->saddr, server = ip->daddr;
    __u16 client_port = udp->source, server_port = udp->dest, id = *(__u16 *)payload;
    int delta = (int)(sizeof(*eth) + sizeof(*ip) + sizeof(*udp) + FRAME_HEADER + length) - (int)((long)end - (long)data);
    if (bpf_xdp_adjust_tail(ctx, delta) != 0 && (delta <= 0 || bpf_xdp_adjust_head(ctx, -delta) != 0)) {
        count(COUNTER_NO_ROOM);
        return XDP_PASS;
    }
    data = (void *)(long)ctx->data;
    end = (void *)(long)ctx->data_end;
    eth = data;
    ip = data + sizeof(*eth);
    udp = (void *)(ip + 1);
    payload = (__u8 *)(udp + 1);
    if ((void *)(payload + FRAME_HEADER) > end) return XDP_DROP;
    if (bpf_xdp_store_bytes(ctx, sizeof(*eth) + sizeof(*ip) + sizeof(*udp) + FRAME_HEADER, value->bytes, length) != 0)
        return XDP_DROP;

    __builtin_memcpy(eth->h_dest, client_mac, ETH_ALEN);
    __builtin_memcpy(eth->h_source, server_mac, ETH_ALEN);
    eth->h_proto = bpf_htons(ETH_P_IP);
    ip->version = 4;
    ip->ihl = 5;
    ip->tos = 0;
    ip->tot_len = bpf_htons((__u16)(sizeof(*ip) + sizeof(*udp) + FRAME_HEADER + length));
    ip->id = 0;
    ip->frag_off = 0;
    ip->ttl = 64;
    ip->protocol = IPPROTO_UDP;
    ip->saddr = server;
    ip->daddr = client;
    ip->check = 0;
    ip->check = ipv4_checksum(ip);
    udp->source = server_port;
    udp->dest = client_port;
    udp->len = bpf_htons((__u16)(sizeof(*udp) + FRAME_HEADER + length));
    udp->check = 0;  // none: allowed over IPv4
    *(__u16 *)payload = id;
    *(__u16 *)(payload + 2) = 0;
    *(__u16 *)(payload + 4) = bpf_htons(1);
    *(__u16 *)(payload + 6) = 0;
    count(COUNTER_HITS);
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
