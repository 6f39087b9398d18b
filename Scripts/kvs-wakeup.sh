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
#             ready connection (TCP): the kernel's share, which no server can go under
#     RATE: requests/s (default 20000; 0: closed loop, 4 sockets x depth 8)
#     FORMAT: udp-binary (default), udp-ascii, tcp-binary, tcp-ascii (floor: binary only)
#
# Environment: TIMER_US (a thread sleeping that long in a loop on the server core, as
# `flexbench compare --core-timer`), SECONDS_MEASURED (4), SERVER_CPU (1), CLIENT_CPU (0),
# BUILD (.build/release).
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?usage: kvs-wakeup.sh memcached|flexkvs|floor [RATE [FORMAT]]}
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
[[ -x $build/flexbench ]] || swift build -c release --product flexbench >&2

if [[ $server == floor || -n ${TIMER_US:-} ]]; then
    cat > "$work/floor.c" <<'C'
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
enum { B = 4, VALUE = 64 };
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
static int listening(int type, int port) {
    int fd = socket(AF_INET, type, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
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
if [[ -n ${TIMER_US:-} ]]; then
    taskset -c "$server_cpu" "$work/floor" timer "$TIMER_US" &
    pids+=($!)
fi

case $server in
    memcached) taskset -c "$server_cpu" memcached -u nobody -l 127.0.0.1 -p $port -U $port -t 1 -m 256 & ;;
    flexkvs) taskset -c "$server_cpu" "$build/flexkvs" -l 127.0.0.1 -p $port -U $port -t 1 -m 256 >/dev/null 2>&1 & ;;
    floor) taskset -c "$server_cpu" "$work/floor" "${format%%-*}" $port & ;;
    *) echo "kvs-wakeup: no server $server" >&2; exit 2 ;;
esac
pid=$!
pids+=($pid)
sleep 1
client=(taskset -c "$client_cpu" "$build/flexbench" kvs --server 127.0.0.1:$port --format "$format")
[[ $server == floor ]] || "${client[@]}" --duration 1 --warmup 0.2 >/dev/null  # preload and warm up

runtime() { cat /proc/$pid/task/*/schedstat | awk '{ s += $1; n += $3 } END { printf "%.0f %.0f\n", s, n }'; }
idle() { awk '$1 == "cpu'"$server_cpu"'" { print $5 + $6 }' /proc/stat; }
read -r ns0 sw0 < <(runtime); i0=$(idle); t0=$(date +%s.%N)
result=$("${client[@]}" --duration "$seconds" --warmup 0 --rate "$rate" --no-preload | tail -1)
read -r ns1 sw1 < <(runtime); i1=$(idle); t1=$(date +%s.%N)
ops=$(sed -E 's/kvs: ([0-9]+) ops.*/\1/' <<<"$result")
python3 - "$server" "$format" "$rate" "$ops" "$seconds" "$ns0" "$ns1" "$sw0" "$sw1" "$i0" "$i1" "$t0" "$t1" "${TIMER_US:-}" <<'PY'
import os, sys
name, fmt, rate, ops, secs, ns0, ns1, sw0, sw1, i0, i1, t0, t1, timer = sys.argv[1:]
n = int(ops) * float(secs)
hz = os.sysconf("SC_CLK_TCK")
busy = float(t1) - float(t0) - (int(i1) - int(i0)) / hz
print(f"kvs-wakeup: {name} {fmt} {'closed loop' if float(rate) == 0 else 'at ' + rate + '/s'}{', core timer ' + timer + ' us' if timer else ''}: "
      f"server CPU {(int(ns1) - int(ns0)) / 1e3 / n:.2f} us, core busy {busy * 1e6 / n:.2f} us, "
      f"{(int(sw1) - int(sw0)) / n:.2f} context switches per request ({n:.0f} requests)")
PY
