#!/usr/bin/env bash
# Cache behaviour of IDS instances under hash vs partition steering, repeatably
# (thesis 6.2.4: -56 % L3 accesses per packet with partition steering).
#
# Steps: generate a trace; profile its first part; partition the flow groups onto N
# instances; replay the rest with `hash` and with `partition` steering, writing each
# instance's share of the packets to a pcap; then run each share alone under
# `valgrind --tool=cachegrind` (`flexids inspect`: one instance, one thread) and print
# last-level accesses and misses per packet.
#
# The simulated hierarchy models one core of this machine: cachegrind has two levels,
# so its first level stands for a core's private caches (L1+L2, 512 KiB here) and its
# last level (LL) for the shared L3 slice a core may use (default 8 MiB). "LL accesses"
# are therefore what the thesis counts as L3 accesses: misses in the private caches.
# Rule loading is measured once on an empty trace and subtracted.
#
# Usage: Scripts/ids-cachegrind.sh [--rules FILE]... [--vars FILE] [--flows N]
#          [--instances N] [--private BYTES] [--ll BYTES] [--jobs N] [--keep DIR]
#          [--no-split] [--slack X]      (passed to flexids partition)
# Defaults: ET Open from ../shared/data/rules if present, else Configs/ids/flex-sample.rules
# (which fits in any cache, so expect no difference); 6000 flows; 4 instances;
# private 524288; LL 8388608; 2 parallel valgrind jobs. With ET Open (16k rules) each
# valgrind run spends about 3 minutes loading the rules: the whole script takes ~15 min.
set -euo pipefail
cd "$(dirname "$0")/.."

RULES=() VARS="" FLOWS=6000 INSTANCES=4 PRIVATE=524288 LL=8388608 JOBS=2 KEEP="" PARTITION=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --rules) RULES+=(--rules "$2"); shift 2 ;;
        --vars) VARS="$2"; shift 2 ;;
        --flows) FLOWS="$2"; shift 2 ;;
        --instances) INSTANCES="$2"; shift 2 ;;
        --private) PRIVATE="$2"; shift 2 ;;
        --ll) LL="$2"; shift 2 ;;
        --jobs) JOBS="$2"; shift 2 ;;
        --keep) KEEP="$2"; shift 2 ;;
        --no-split) PARTITION+=(--no-split); shift ;;
        --slack) PARTITION+=(--slack "$2"); shift 2 ;;
        -h|--help) sed -n '2,26p' "$0"; exit 0 ;;
        *) echo "ids-cachegrind: unknown argument $1 (--help)" >&2; exit 2 ;;
    esac
done
if [[ ${#RULES[@]} -eq 0 ]]; then
    if [[ -f ../shared/data/rules/et-open-bsd.rules ]]; then
        RULES=(--rules ../shared/data/rules/et-open-bsd.rules --rules Configs/ids/flex-sample.rules)
        VARS=${VARS:-../shared/data/rules/snort-vars.conf}
    else
        RULES=(--rules Configs/ids/flex-sample.rules)
        VARS=${VARS:-Configs/ids/snort-vars.conf}
    fi
fi
command -v valgrind >/dev/null || { apt-get update -qq && apt-get install -y -qq valgrind >/dev/null; }

swift build -c release --product flexids >/dev/null
WORK=${KEEP:-$(mktemp -d /tmp/ids-cachegrind.XXXXXX)}
mkdir -p "$WORK"
[[ -n "$KEEP" ]] || trap 'rm -rf "$WORK"' EXIT
# Valgrind 3.19 cannot read the DWARF 5 the Swift toolchain writes: measure a copy
# without debug information (the code is the same).
cp .build/release/flexids "$WORK/flexids" && strip --strip-debug "$WORK/flexids"
FLEXIDS="$WORK/flexids"
RULEARGS=("${RULES[@]}" --warnings 0)
[[ -n "$VARS" ]] && RULEARGS+=(--vars "$VARS")
export SWIFT_DETERMINISTIC_HASHING=1  # the same rule-loading work in every run

echo "== trace, profile, partition, replay (${INSTANCES} instances)"
"$FLEXIDS" generate --output "$WORK/trace.pcap" --flows "$FLOWS" --seed 11
"$FLEXIDS" profile "${RULEARGS[@]}" --pcap "$WORK/trace.pcap" --prefix 0.05 --output "$WORK/profile.json" 2>/dev/null | head -8
"$FLEXIDS" partition --profile "$WORK/profile.json" --instances "$INSTANCES" --output "$WORK/steering.toml" "${PARTITION[@]}"
for mode in hash partition; do
    "$FLEXIDS" run "${RULEARGS[@]}" --pcap "$WORK/trace.pcap" --prefix 0.05 --instances "$INSTANCES" --steering "$mode" \
        --table "$WORK/steering.toml" --shares "$WORK/$mode" --alerts "$WORK/$mode.alerts" 2>/dev/null | head -1
done
cmp -s "$WORK/hash.alerts" "$WORK/partition.alerts" || { echo "ids-cachegrind: alerts differ between modes" >&2; exit 1; }
printf '\xd4\xc3\xb2\xa1\x02\x00\x04\x00\x00\x00\x00\x00\x00\x00\x00\x00\xff\xff\x00\x00\x01\x00\x00\x00' > "$WORK/empty.pcap"

# One cachegrind run: prints "LLrefs LLmisses packets".
measure() {
    local pcap=$1 out=$2
    valgrind --tool=cachegrind --cache-sim=yes --I1=32768,8,64 --D1="$PRIVATE",8,64 --LL="$LL",16,64 \
        --cachegrind-out-file=/dev/null "$FLEXIDS" inspect "${RULEARGS[@]}" --pcap "$pcap" >"$out.stdout" 2>"$out.log"
    local refs misses packets
    refs=$(grep 'LL refs:' "$out.log" | awk '{gsub(",", "", $4); print $4}')
    misses=$(grep 'LL misses:' "$out.log" | awk '{gsub(",", "", $4); print $4}')
    packets=$(grep -o 'inspected [0-9]*' "$out.stdout" | awk '{print $2}')
    echo "$refs $misses $packets" >"$out"
}

echo "== cachegrind: private ${PRIVATE} B, LL ${LL} B; ${JOBS} at a time (about 3 min each with ET Open)"
runs=("$WORK/empty.pcap:$WORK/baseline.cg")
for mode in hash partition; do
    for ((i = 0; i < INSTANCES; i++)); do runs+=("$WORK/$mode/instance-$i.pcap:$WORK/$mode-$i.cg"); done
done
n=0
for r in "${runs[@]}"; do
    measure "${r%%:*}" "${r##*:}" &
    n=$((n + 1))
    if ((n % JOBS == 0)); then wait; echo "   $n of ${#runs[@]} runs done"; fi
done
wait

read -r base_refs base_misses _ <"$WORK/baseline.cg"
echo "== last-level accesses and misses per packet (rule loading subtracted)"
printf '%-10s %-9s %9s %14s %14s\n' mode instance packets "LL acc/pkt" "LL miss/pkt"
declare -A total_refs total_misses total_packets
for mode in hash partition; do
    total_refs[$mode]=0 total_misses[$mode]=0 total_packets[$mode]=0
    for ((i = 0; i < INSTANCES; i++)); do
        read -r refs misses packets <"$WORK/$mode-$i.cg"
        r=$((refs - base_refs)) m=$((misses - base_misses))
        total_refs[$mode]=$((total_refs[$mode] + r)) total_misses[$mode]=$((total_misses[$mode] + m))
        total_packets[$mode]=$((total_packets[$mode] + packets))
        awk -v mo="$mode" -v i="$i" -v p="$packets" -v r="$r" -v m="$m" \
            'BEGIN { printf "%-10s %-9s %9d %14.1f %14.1f\n", mo, i, p, (p ? r / p : 0), (p ? m / p : 0) }'
    done
done
awk -v hr="${total_refs[hash]}" -v hm="${total_misses[hash]}" -v hp="${total_packets[hash]}" \
    -v pr="${total_refs[partition]}" -v pm="${total_misses[partition]}" -v pp="${total_packets[partition]}" 'BEGIN {
    printf "all: hash %.1f acc %.1f miss per packet; partition %.1f acc %.1f miss per packet\n", hr / hp, hm / hp, pr / pp, pm / pp
    printf "partition / hash: LL accesses %.3f (%.1f %% fewer), LL misses %.3f\n", (pr / pp) / (hr / hp), 100 * (1 - (pr / pp) / (hr / hp)), (pm / pp) / (hm / hp)
}'
