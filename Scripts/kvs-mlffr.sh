#!/usr/bin/env bash
# Measures flexkvs's capacity on the kernel-bypass path: flexkvs --io dpdk serves the
# server end of a DPDK net_memif pair, pinned to one core, and `flexbench kvs --mlffr`
# (pinned to the other) replays prebuilt request frames to find the maximum loss-free
# rate. Prints each trial, the MLFFR, the server core's cycles per request at it, and the
# server's own per-request cycle figures (`stats steering`).
#
#   bash Scripts/kvs-mlffr.sh [STEERING [FORMAT]] [-- flexbench kvs options]
#     STEERING: key (default), dma, flow, ...   FORMAT: udp-binary (default) or udp-ascii
#     e.g. bash Scripts/kvs-mlffr.sh dma udp-binary -- --duration 1 --loss 0.001
#
# Environment: SERVER_CPU (default 1), CLIENT_CPU (default 0), BUILD (default
# .build/release; `swift build -c release` first).
set -euo pipefail
cd "$(dirname "$0")/.."
steering=key
format=udp-binary
[[ $# -gt 0 && $1 != "--" ]] && { steering=$1; shift; }
[[ $# -gt 0 && $1 != "--" ]] && { format=$1; shift; }
[[ $# -gt 0 && $1 == "--" ]] && shift
build=${BUILD:-.build/release}
server_cpu=${SERVER_CPU:-1}
client_cpu=${CLIENT_CPU:-0}
for b in flexkvs flexbench; do
    [[ -x $build/$b ]] || { echo "no $build/$b: run swift build -c release first" >&2; exit 2; }
done
sock=/tmp/flexkvs-mlffr-$$.sock
stats_port=$((21400 + $$ % 1000))
rm -f "$sock"
taskset -c "$server_cpu" "$build/flexkvs" -l 198.18.0.2 -U 11211 -p "$stats_port" --steering "$steering" --io dpdk -m 1024 \
    --eal "--no-huge --no-pci -m 512 --file-prefix=kvs-$$ --vdev=net_memif0,role=server,socket=$sock,socket-abstract=no" \
    > "/tmp/flexkvs-mlffr-$$.log" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$sock"' EXIT
sleep 2
kill -0 $server 2>/dev/null || { echo "flexkvs did not start:" >&2; cat "/tmp/flexkvs-mlffr-$$.log" >&2; exit 1; }
echo "mlffr: flexkvs --steering $steering on cpu $server_cpu, flexbench on cpu $client_cpu, $format"
taskset -c "$client_cpu" "$build/flexbench" kvs --server 198.18.0.2:11211 --format "$format" --io dpdk --mlffr "$@" \
    --eal "--no-huge --no-pci -m 512 --file-prefix=bench-$$ --vdev=net_memif0,role=client,socket=$sock,socket-abstract=no"
python3 Scripts/kvs-stats.py "$stats_port" steering \
    | grep -E "cycles|transmit_dropped|replies_unsent|dropped_full" | sed 's/^/mlffr: server /'
