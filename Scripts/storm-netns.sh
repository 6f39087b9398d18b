#!/usr/bin/env bash
# Makes (up) or removes (down) three network namespaces for a 3-node FlexStorm cluster:
# flexstorm-a/b/c with 198.18.1.1-3/24 on veths joined by the bridge flexstorm-br.
# The addresses are those of Configs/storm-3node-*.toml; the traffic stays inside.
# Needs root. `up` first removes what an earlier run left.
set -euo pipefail
prefix=${FLEXSTORM_NETNS_PREFIX:-flexstorm}
bridge="${prefix}-br"
nodes=(a b c)

down() {
    for n in "${nodes[@]}"; do ip netns del "${prefix}-$n" 2>/dev/null || true; done
    ip link del "$bridge" 2>/dev/null || true
}

up() {
    down
    ip link add "$bridge" type bridge
    ip link set "$bridge" up
    local i=1
    for n in "${nodes[@]}"; do
        local ns="${prefix}-$n" host="${prefix:0:6}-$n-h" peer="${prefix:0:6}-$n-n"
        ip netns add "$ns"
        ip link add "$host" type veth peer name "$peer"
        ip link set "$peer" netns "$ns"
        ip link set "$host" master "$bridge" up
        ip -n "$ns" addr add "198.18.1.$i/24" dev "$peer"
        ip -n "$ns" link set "$peer" up
        ip -n "$ns" link set lo up
        i=$((i + 1))
    done
    echo "storm-netns: ${nodes[*]/#/${prefix}-} up on $bridge (198.18.1.1-3)"
}

case "${1:-}" in
    up) up ;;
    down) down; echo "storm-netns: removed" ;;
    *) echo "usage: $0 up|down   (FLEXSTORM_NETNS_PREFIX=name to run several side by side)" >&2; exit 2 ;;
esac
