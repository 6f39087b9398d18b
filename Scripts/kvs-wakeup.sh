#!/usr/bin/env bash
# What a request costs a server that wakes for each one (issue 16): runs SERVER on
# SERVER_CPU under an open-loop `flexbench kvs` load at RATE requests/s (pinned to
# CLIENT_CPU) and prints, per request, the server's CPU time from its threads'
# schedstat (exact, not tick-sampled), the server core's busy time (/proc/stat), and
# context switches.
#
#   bash Scripts/kvs-wakeup.sh SERVER [RATE [FORMAT]]
#     SERVER: memcached, flexkvs, or floor: a C responder that answers every binary
#             request with a canned reply (a GET's with a 64-byte value, no key: what
#             `flexbench kvs` sends and reads) and only calls
#             epoll_wait, recvmmsg and sendmmsg (UDP) or one read and one write per
#             ready connection (TCP): the kernel's share, which no server can go under;
#             or floor-uring: the TCP floor on io_uring (liburing-dev): a multishot
#             receive per connection into a ring of provided buffers, replies sent
#             through the ring, DEFER_TASKRUN (one io_uring_enter a wakeup)
#     RATE: requests/s (default 20000; 0: closed loop, flexbench's 4 sockets x depth 8
#           unless CLIENT_ARGS says otherwise)
#     FORMAT: udp-binary (default), udp-ascii, tcp-binary, tcp-ascii (floor: binary only)
#
# Environment: TIMER_US (a thread sleeping that long in a loop on the server core, as
# `flexbench compare --core-timer`), FLEXKVS_ARGS (more flexkvs options, e.g. `--no-warm-cores`),
# SECONDS_MEASURED (4), SERVER_CPU (1), CLIENT_CPU (0),
# BUILD (.build/release), CLIENT_ARGS (more `flexbench kvs` options, e.g. `--connections
# 16 --depth 1`: sixteen clients that do not pipeline); LINK=veth (root) runs the server
# in a network namespace behind a veth pair whose ends receive in NAPI threads pinned to
# the server's and the client's CPU, as `flexbench compare --link veth` does, and adds
# the server end's receive threads to the server's CPU ("server+receive"); BUSY_POLL_US
# (floor, TCP: busy-poll the epoll set that long, EPIOCSPARAMS, Linux 6.9;
# PREFER_BUSY_POLL=1 too).
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?usage: kvs-wakeup.sh memcached|flexkvs|floor|floor-uring [RATE [FORMAT]]}
rate=${2:-20000}
format=${3:-udp-binary}
seconds=${SECONDS_MEASURED:-4}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}
build=${BUILD:-.build/release}
port=23650
work=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT

[[ $server == floor && $format != udp-binary && $format != tcp-binary ]] && { echo "kvs-wakeup: floor answers udp-binary and tcp-binary only" >&2; exit 2; }
[[ $server == floor-uring && $format != tcp-binary ]] && { echo "kvs-wakeup: floor-uring answers tcp-binary only" >&2; exit 2; }
link=${LINK:-loopback}
address=127.0.0.1
run=()      # prefix of the server's command: the namespace behind the veth pair
napi=""     # the server end's NAPI threads
if [[ $link == veth ]]; then
    [[ $(id -u) == 0 ]] || { echo "kvs-wakeup: LINK=veth needs root" >&2; exit 2; }
    ns=kvswake
    ip link del kwc 2>/dev/null || true  # both ends, at once (deleting the namespace is not)
    ip netns del $ns 2>/dev/null || true
    ip netns add $ns
    trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; ip link del kwc 2>/dev/null || true; ip netns del kvswake 2>/dev/null || true' EXIT
    ip link add kwc type veth peer name kws netns $ns
    ip addr add 198.18.8.1/24 dev kwc
    ip netns exec $ns ip addr add 198.18.8.2/24 dev kws
    for end in "" "ip netns exec $ns"; do
        i=$([[ -z $end ]] && echo kwc || echo kws)
        $end ethtool -K $i gro on tso off gso off >/dev/null
        $end ip link set $i up
        $end sh -c "echo 1 > /sys/class/net/$i/threaded" 2>/dev/null || true  # checked below
    done
    ip netns exec $ns ip link set lo up
    sleep 0.5
    for t in $(pgrep -f "napi/kwc-"); do taskset -p -c "$client_cpu" "$t" >/dev/null; done
    napi=$(pgrep -f "napi/kws-" | tr '\n' ' ' || true)
    for t in $napi; do taskset -p -c "$server_cpu" "$t" >/dev/null; done
    [[ -n $napi ]] || { echo "kvs-wakeup: kws has no NAPI thread (threaded NAPI: Linux 5.13 or later)" >&2; exit 1; }
    address=198.18.8.2
    run=(ip netns exec $ns)
elif [[ $link != loopback ]]; then
    echo "kvs-wakeup: LINK is loopback or veth" >&2; exit 2
fi
[[ -x $build/flexbench ]] || swift build -c release --product flexbench >&2

if [[ $server == floor* || -n ${TIMER_US:-} ]]; then
    cat > "$work/reply.h" <<'C'
enum { VALUE = 64 };
/* Writes the binary reply to request q at r (a GET's: flags and a 64-byte value), returns its length. */
static int reply(const unsigned char *q, unsigned char *r) {
    memset(r, 0, 24);
    r[0] = 0x81, r[1] = q[1];
    memcpy(r + 12, q + 12, 4);  /* opaque */
    int body = (q[1] == 0x00 || q[1] == 0x09 || q[1] == 0x0c || q[1] == 0x0d) ? 4 + VALUE : 0;
    if (body) { r[4] = 4; memset(r + 24, 'v', body); }
    r[11] = body;
    return 24 + body;
}
C
    cat > "$work/floor.c" <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/types.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include "reply.h"
enum { B = 4 };
/* EPIOCSPARAMS (Linux 6.9), declared here for older headers. */
struct busy_poll_params { __u32 usecs; __u16 budget; __u8 prefer; __u8 pad; };
static void busy_poll(int ep) {
    const char *us = getenv("BUSY_POLL_US");
    if (!us) return;
    struct busy_poll_params p = { .usecs = atoi(us), .budget = 64, .prefer = getenv("PREFER_BUSY_POLL") && atoi(getenv("PREFER_BUSY_POLL")) };
    if (ioctl(ep, _IOW(0x8A, 0x01, struct busy_poll_params), &p)) { perror("EPIOCSPARAMS"); exit(1); }
}
static int listening(int type, int port) {
    int fd = socket(AF_INET, type, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, getenv("FLOOR_ADDRESS"), &a.sin_addr);
    if (bind(fd, (void *)&a, sizeof a) || (type == SOCK_STREAM && listen(fd, 128))) exit(1);
    return fd;
}
/* UDP: one epoll_wait, one recvmmsg and one sendmmsg per wakeup. */
static void udp(int port) {
    int fd = listening(SOCK_DGRAM, port), ep = epoll_create1(0);
    struct epoll_event ev = { .events = EPOLLIN };
    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    static unsigned char in[B][2048], out[B][2048];
    struct sockaddr_in peers[B];
    struct mmsghdr rm[B], sm[B];
    struct iovec riov[B], siov[B];
    for (;;) {
        epoll_wait(ep, &ev, 1, -1);
        for (int i = 0; i < B; i++) {
            riov[i] = (struct iovec){ in[i], sizeof in[i] };
            rm[i].msg_hdr = (struct msghdr){ .msg_name = &peers[i], .msg_namelen = sizeof peers[i], .msg_iov = &riov[i], .msg_iovlen = 1 };
        }
        int n = recvmmsg(fd, rm, B, MSG_DONTWAIT, NULL);
        for (int i = 0; i < n; i++) {
            memcpy(out[i], in[i], 8);  /* the memcached UDP frame header */
            siov[i] = (struct iovec){ out[i], 8 + reply(in[i] + 8, out[i] + 8) };
            sm[i].msg_hdr = (struct msghdr){ .msg_name = &peers[i], .msg_namelen = sizeof peers[i], .msg_iov = &siov[i], .msg_iovlen = 1 };
        }
        if (n > 0) sendmmsg(fd, sm, n, MSG_DONTWAIT);
    }
}
/* TCP: per ready connection one read of every pipelined request and one write of their replies. */
static void tcp(int port) {
    int lfd = listening(SOCK_STREAM, port), ep = epoll_create1(0);
    busy_poll(ep);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd }, evs[64];
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    enum { CAP = 1 << 16, MAXFD = 4096 };
    static unsigned char in[MAXFD][2048], out[CAP];
    static int held[MAXFD];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        for (int e = 0; e < n; e++) {
            int fd = evs[e].data.fd;
            if (fd == lfd) {
                int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                if (c < 0 || c >= MAXFD) { if (c >= 0) close(c); continue; }
                held[c] = 0;
                int one = 1;
                setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                ev = (struct epoll_event){ .events = EPOLLIN, .data.fd = c };
                epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                continue;
            }
            ssize_t got = read(fd, in[fd] + held[fd], sizeof in[fd] - held[fd]);
            if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
            if (got <= 0) { close(fd); continue; }
            int have = held[fd] + (int)got, at = 0, w = 0;
            while (have - at >= 24) {
                const unsigned char *q = in[fd] + at;
                int whole = 24 + (q[8] << 24 | q[9] << 16 | q[10] << 8 | q[11]);
                if (have - at < whole) break;
                w += reply(q, out + w);
                at += whole;
            }
            memmove(in[fd], in[fd] + at, have - at);
            held[fd] = have - at;
            for (int sent = 0; sent < w;) {  /* all of it: the client waits for every reply */
                ssize_t k = write(fd, out + sent, w - sent);
                if (k > 0) sent += (int)k;
                else if (k < 0 && errno != EAGAIN && errno != EINTR) break;
            }
        }
    }
}
int main(int argc, char **argv) {
    if (argc < 3) return 2;
    if (!strcmp(argv[1], "timer")) {  /* sleep argv[2] microseconds in a loop */
        struct timespec t = { 0, atol(argv[2]) * 1000 };
        for (;;) nanosleep(&t, NULL);
    }
    if (!strcmp(argv[1], "tcp")) tcp(atoi(argv[2])); else udp(atoi(argv[2]));
}
C
    cc -O2 -o "$work/floor" "$work/floor.c"
fi
if [[ $server == floor-uring ]]; then
    cat > "$work/uring.c" <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include "reply.h"
enum { BUFFERS = 256, BUFFER = 4096, MAXFD = 1024, GROUP = 1, ACCEPT = 0, RECEIVE = 1, SEND = 2 };
static struct io_uring ring;
static unsigned char held[MAXFD][2 * BUFFER], out[MAXFD][1 << 16];  /* a partial request and a buffer */
static int heldLength[MAXFD], outLength[MAXFD], sending[MAXFD];  /* replies waiting; bytes of them in flight */
static int ready[MAXFD], readyCount;  /* connections with replies to send after this batch of completions */
static void submit(int op, int fd, void *data, int length) {
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    if (op == ACCEPT) io_uring_prep_multishot_accept(s, fd, NULL, NULL, 0);
    if (op == RECEIVE) { io_uring_prep_recv_multishot(s, fd, NULL, 0, 0); s->flags |= IOSQE_BUFFER_SELECT; s->buf_group = GROUP; }
    if (op == SEND) io_uring_prep_send(s, fd, data, length, 0);
    io_uring_sqe_set_data64(s, (unsigned long)fd << 2 | op);
}
static void send_ready(int fd) {
    if (sending[fd] || outLength[fd] == 0) return;
    sending[fd] = outLength[fd];
    submit(SEND, fd, out[fd], outLength[fd]);
}
/* A multishot receive per connection into provided buffers, replies sent through the ring:
   one io_uring_enter per wakeup submits the sends and waits. */
int main(int argc, char **argv) {
    (void)argc;
    struct io_uring_params p = { .flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_CQSIZE, .cq_entries = 4096 };
    if (io_uring_queue_init_params(1024, &ring, &p)) { perror("io_uring"); return 1; }
    struct io_uring_buf_ring *buffers = mmap(NULL, BUFFERS * sizeof(struct io_uring_buf), PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    unsigned char *memory = malloc(BUFFERS * BUFFER);
    struct io_uring_buf_reg reg = { .ring_addr = (unsigned long)buffers, .ring_entries = BUFFERS, .bgid = GROUP };
    if (io_uring_register_buf_ring(&ring, &reg, 0)) { perror("provided buffers"); return 1; }
    io_uring_buf_ring_init(buffers);
    for (int i = 0; i < BUFFERS; i++) io_uring_buf_ring_add(buffers, memory + i * BUFFER, BUFFER, i, io_uring_buf_ring_mask(BUFFERS), i);
    io_uring_buf_ring_advance(buffers, BUFFERS);
    int lfd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(atoi(argv[1])) };
    inet_pton(AF_INET, getenv("FLOOR_ADDRESS"), &a.sin_addr);
    if (bind(lfd, (void *)&a, sizeof a) || listen(lfd, 128)) return 1;
    submit(ACCEPT, lfd, NULL, 0);
    for (;;) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *c;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, c) {
            seen++;
            int fd = (int)(c->user_data >> 2), op = (int)(c->user_data & 3);
            if (op == ACCEPT) {
                if (c->res >= 0 && c->res < MAXFD) {
                    setsockopt(c->res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    heldLength[c->res] = 0;
                    submit(RECEIVE, c->res, NULL, 0);
                }
                if (!(c->flags & IORING_CQE_F_MORE)) submit(ACCEPT, lfd, NULL, 0);
                continue;
            }
            if (op == SEND) {  /* drop what went, send the rest (a short send, or replies added meanwhile) */
                int sent = c->res > 0 ? c->res : sending[fd];
                memmove(out[fd], out[fd] + sent, outLength[fd] - sent);
                outLength[fd] -= sent;
                sending[fd] = 0;
                send_ready(fd);
                continue;
            }
            if (c->res <= 0) { if (c->res == -ENOBUFS) submit(RECEIVE, fd, NULL, 0); else close(fd); continue; }
            int id = c->flags >> IORING_CQE_BUFFER_SHIFT, have = c->res;
            unsigned char *in = memory + id * BUFFER;
            if (heldLength[fd]) { memcpy(held[fd] + heldLength[fd], in, have); in = held[fd]; have += heldLength[fd]; }
            int at = 0, w = outLength[fd];
            while (have - at >= 24 && w < (int)sizeof out[fd] - 24 - 4 - VALUE) {
                const unsigned char *q = in + at;
                int whole = 24 + (q[8] << 24 | q[9] << 16 | q[10] << 8 | q[11]);
                if (have - at < whole) break;
                w += reply(q, out[fd] + w);
                at += whole;
            }
            if (w > outLength[fd] && outLength[fd] == 0) ready[readyCount++] = fd;
            outLength[fd] = w;
            memmove(held[fd], in + at, have - at);
            heldLength[fd] = have - at;
            io_uring_buf_ring_add(buffers, memory + id * BUFFER, BUFFER, id, io_uring_buf_ring_mask(BUFFERS), 0);
            io_uring_buf_ring_advance(buffers, 1);
            if (!(c->flags & IORING_CQE_F_MORE)) submit(RECEIVE, fd, NULL, 0);
        }
        io_uring_cq_advance(&ring, seen);
        for (int i = 0; i < readyCount; i++) send_ready(ready[i]);  /* one send a connection */
        readyCount = 0;
    }
}
C
    cc -O2 -o "$work/floor-uring" "$work/uring.c" -luring || { echo "kvs-wakeup: floor-uring needs liburing (apt-get install liburing-dev)" >&2; exit 1; }
fi
if [[ -n ${TIMER_US:-} ]]; then
    taskset -c "$server_cpu" "$work/floor" timer "$TIMER_US" &
    pids+=($!)
fi

export FLOOR_ADDRESS=$address
case $server in
    memcached) "${run[@]}" taskset -c "$server_cpu" memcached -u nobody -l $address -p $port -U $port -t 1 -m 256 & ;;
    flexkvs) "${run[@]}" taskset -c "$server_cpu" "$build/flexkvs" -l $address -p $port -U $port -t 1 -m 256 ${FLEXKVS_ARGS:-} >/dev/null 2>&1 & ;;
    floor) "${run[@]}" taskset -c "$server_cpu" "$work/floor" "${format%%-*}" $port & ;;
    floor-uring) "${run[@]}" taskset -c "$server_cpu" "$work/floor-uring" $port & ;;
    *) echo "kvs-wakeup: no server $server" >&2; exit 2 ;;
esac
launcher=$!
pids+=($launcher)
sleep 1
# The server itself (ip netns exec and taskset exec into it; the pid stays the same).
pid=$launcher
client=(taskset -c "$client_cpu" "$build/flexbench" kvs --server $address:$port --format "$format" ${CLIENT_ARGS:-})
[[ $server == floor* ]] || "${client[@]}" --duration 1 --warmup 0.2 >/dev/null  # preload and warm up

runtime() { cat /proc/$pid/task/*/schedstat | awk '{ s += $1; n += $3 } END { printf "%.0f %.0f\n", s, n }'; }
receive() { for t in $napi; do cat /proc/$t/schedstat; done | awk '{ s += $1 } END { printf "%.0f\n", s }'; }
idle() { awk '$1 == "cpu'"$server_cpu"'" { print $5 + $6 }' /proc/stat; }
read -r ns0 sw0 < <(runtime); r0=$(receive); i0=$(idle); t0=$(date +%s.%N)
result=$("${client[@]}" --duration "$seconds" --warmup 0 --rate "$rate" --no-preload | tail -1)
read -r ns1 sw1 < <(runtime); r1=$(receive); i1=$(idle); t1=$(date +%s.%N)
ops=$(sed -E 's/kvs: ([0-9]+) ops.*/\1/' <<<"$result")
python3 - "$server" "$format" "$rate" "$ops" "$seconds" "$ns0" "$ns1" "$sw0" "$sw1" "$i0" "$i1" "$t0" "$t1" "${TIMER_US:-}" "$r0" "$r1" "$link" <<'PY'
import os, sys
name, fmt, rate, ops, secs, ns0, ns1, sw0, sw1, i0, i1, t0, t1, timer, r0, r1, link = sys.argv[1:]
n = int(ops) * float(secs)
hz = os.sysconf("SC_CLK_TCK")
busy = float(t1) - float(t0) - (int(i1) - int(i0)) / hz
server = (int(ns1) - int(ns0)) / 1e3 / n
receive = f"server+receive CPU {server + (int(r1) - int(r0)) / 1e3 / n:.2f} us, " if link == "veth" else ""
print(f"kvs-wakeup: {name} {fmt} {'closed loop' if float(rate) == 0 else 'at ' + rate + '/s'}{', core timer ' + timer + ' us' if timer else ''}"
      f"{', behind a veth pair' if link == 'veth' else ''}: server CPU {server:.2f} us, {receive}core busy {busy * 1e6 / n:.2f} us, "
      f"{(int(sw1) - int(sw0)) / n:.2f} context switches per request ({n:.0f} requests)")
PY
