#!/usr/bin/env bash
# Instructions per request, in user space, of flexkvs and memcached under the same load,
# counted exactly by `valgrind --tool=callgrind` (issue 16, step 1). Each server runs on
# kernel sockets with one worker thread, pinned to SERVER_CPU; `flexbench kvs` (pinned to
# CLIENT_CPU) preloads the keys and warms up, the counters are zeroed
# (`callgrind_control -z`), a measured run follows, and the counters are dumped. The
# requests of that run come from the server's own `stats` (cmd_get + cmd_set), so the
# figure is every instruction the server process executed while serving them (event
# loop, protocol, store, the user side of system calls), divided by them. Kernel time is
# not in it: callgrind counts user space only.
#
#   bash Scripts/kvs-callgrind.sh [FORMAT] [-- flexbench kvs options]
#     FORMAT: udp-binary (default), udp-ascii, tcp-ascii, tcp-binary
#   Environment: SERVERS (default "memcached flexkvs"; flexkvs:STEERING picks its
#   steering, e.g. "flexkvs:key flexkvs:dma"); BUILD (the directory of the flexkvs
#   measured: .build/release, built first; another, e.g. an older commit's, is measured
#   as it is; the client is always .build/release/flexbench); TOP (functions listed per
#   server, 25); MEASURE_SECONDS (the measured run, 3); SERVER_CPU (1), CLIENT_CPU (0);
#   KEEP (a directory that keeps the callgrind files); CALLGRIND_OPTIONS (more valgrind
#   options: --dump-instr=yes lets Scripts/callgrind-lines.py count a function's
#   instructions per source line).
#
# Under valgrind a server runs about 50 times slower, so the load is a closed loop of a
# few requests outstanding: the figures are instructions, not time.
set -euo pipefail
cd "$(dirname "$0")/.."
format=udp-binary
[[ $# -gt 0 && $1 != "--" ]] && { format=$1; shift; }
[[ $# -gt 0 && $1 == "--" ]] && shift
servers=${SERVERS:-memcached flexkvs}
top=${TOP:-25}
seconds=${MEASURE_SECONDS:-3}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }
build=${BUILD:-.build/release}
[[ -n ${BUILD:-} ]] || swift build -c release --product flexkvs >&2
swift build -c release --product flexbench >&2
work=${KEEP:-$(mktemp -d /tmp/kvs-callgrind.XXXXXX)}
mkdir -p "$work"
# Each server runs as nobody (memcached will not run as root without -u, and
# callgrind_control reaches a valgrind run only as the user it started as), and writes
# its dumps here.
chmod 1777 "$work"
[[ -n "${KEEP:-}" ]] || trap 'rm -rf "$work"' EXIT
# Valgrind 3.19 cannot read the DWARF 5 the Swift toolchain writes: measure a copy
# without debug information (the code is the same).
cp "$build/flexkvs" "$work/flexkvs" && strip --strip-debug "$work/flexkvs"
port=$((22000 + $$ % 1000))
# memcached sets its descriptor limit at start, which valgrind refuses (it keeps the
# limit for itself): a preloaded setrlimit that reports success lets it start (it needs
# far fewer descriptors than the limit it already has).
printf '#include <sys/resource.h>\nint setrlimit(__rlimit_resource_t r, const struct rlimit *l) { (void)r; (void)l; return 0; }\n' > "$work/rlimit.c"
clang -shared -fPIC -o "$work/rlimit.so" "$work/rlimit.c"

stat_requests() {  # the server's cmd_get + cmd_set
    python3 Scripts/kvs-stats.py "$port" | awk '$1 == "cmd_get" || $1 == "cmd_set" { n += $2 } END { print n }'
}

for spec in $servers; do
    name=${spec%%:*}
    steering=${spec#*:}; [[ $steering == "$spec" ]] && steering=key
    out="$work/$name-$steering.cg"
    case $name in
        memcached) cmd=(memcached -l 127.0.0.1 -p "$port" -U "$port" -t 1 -m 256) preload=$work/rlimit.so label=memcached ;;
        flexkvs) cmd=("$work/flexkvs" -l 127.0.0.1 -p "$port" -U "$port" -t 1 -m 256 --steering "$steering") preload= label="flexkvs --steering $steering" ;;
        *) echo "kvs-callgrind: unknown server $name (memcached or flexkvs[:STEERING])" >&2; exit 2 ;;
    esac
    taskset -c "$server_cpu" runuser -u nobody -- env LD_PRELOAD="$preload" \
        valgrind --tool=callgrind --compress-strings=no ${CALLGRIND_OPTIONS:-} --callgrind-out-file="$out" "${cmd[@]}" >"$out.log" 2>&1 &
    for _ in $(seq 60); do stat_requests >/dev/null 2>&1 && break; sleep 0.5; done
    vg=$(pgrep -n -f -- "--callgrind-out-file=$out " || true)  # the newest: valgrind, under runuser
    [[ -n $vg ]] || { echo "kvs-callgrind: $label did not start:" >&2; cat "$out.log" >&2; exit 1; }
    client=(taskset -c "$client_cpu" .build/release/flexbench kvs --server "127.0.0.1:$port" --format "$format"
            --connections 4 --depth 4 --keys 10000)
    "${client[@]}" --duration 1 --warmup 0.5 "$@" >/dev/null
    before=$(stat_requests)
    runuser -u nobody -- callgrind_control -z "$vg" >/dev/null
    "${client[@]}" --duration "$seconds" --warmup 0 --no-preload "$@" | sed -n 2p >&2
    runuser -u nobody -- callgrind_control -d "$vg" >/dev/null
    after=$(stat_requests)
    kill -INT "$vg"; wait 2>/dev/null || true
    requests=$((after - before))
    dump=$(ls "$out".* | grep -v '\.log$' | sort -t. -k3 -n | head -1)
    python3 - "$dump" "$requests" "$top" "$label, $format" <<'PY'
import collections, re, shutil, subprocess, sys
# A callgrind dump without string compression: "fn=NAME" opens a function, cost lines
# ("POSITION COST") are its own instructions, and the cost line after "calls=" is what
# a call from it cost (its callees' inclusive cost).
path, requests, top, label = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
own, callees = collections.Counter(), collections.Counter()
fn, after_call = None, False
for line in open(path, errors="replace"):
    if line.startswith("fn="):
        fn = line[3:].strip()
    elif line.startswith("calls="):
        after_call = True
    elif line[:1].isdigit() or line[:1] in "+-*":
        parts = line.split()
        if len(parts) >= 2 and fn is not None:
            if after_call: callees[fn] += int(parts[-1])
            else: own[fn] += int(parts[-1])
        after_call = False
total = sum(own.values())
def names(ns):
    demangle = shutil.which("swift-demangle")
    if not demangle: return ns
    out = subprocess.run([demangle, "--simplified", "--compact"], input="\n".join(ns), capture_output=True, text=True).stdout
    return out.split("\n")[:len(ns)]
print(f"== {label}: {requests} requests, {total / requests:.0f} instructions per request (user space)")
# Inclusive figures leave out the thread's frames (start_thread, the event loop) that
# hold nearly everything.
inclusive = {f: own[f] + callees[f] for f in set(own) | set(callees) if own[f] + callees[f] < 0.95 * total}
for title, counts in (("own", own), ("inclusive", inclusive)):
    best = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    print(f"   {title} instructions per request, by function:")
    for (f, c), n in zip(best, names([f for f, _ in best])):
        print(f"   {c / requests:8.0f}  {n[:140]}")
PY
done
