#!/usr/bin/env bash
# Fuzzes flex's parsers with libFuzzer (Sources/flexfuzz: one binary, FLEXFUZZ_TARGET
# picks the target), built with -sanitize=fuzzer,address in .build-fuzz.
#
#   bash Scripts/fuzz.sh TARGET SECONDS   fuzz one target (corpus grows in .build-fuzz/corpus/TARGET)
#   bash Scripts/fuzz.sh all SECONDS      every target in turn, SECONDS each
#   bash Scripts/fuzz.sh smoke            every target for 10 s from the committed seeds (CI)
#   bash Scripts/fuzz.sh list             the targets
#
# Seeds: Tests/Fuzz/seeds/TARGET (small, committed; made from the project's own traces,
# configs, rules and requests). A crash, a failed check, a leak or an input that takes
# over 1 s stops the run and leaves the input in .build-fuzz/findings/TARGET; turn each
# into a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
targets=(frame pipeline dccp memcached udp rules ids pcap program storm-config)
if [[ "${1:-}" == "list" || $# -lt 1 ]]; then
    echo "${targets[@]}"
    [[ $# -ge 1 ]] && exit 0
    echo "usage: bash Scripts/fuzz.sh TARGET|all SECONDS | smoke | list" >&2
    exit 2
fi
swift build --product flexfuzz --scratch-path .build-fuzz \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFLEXFUZZ -Xswiftc -use-ld=lld >&2
binary=.build-fuzz/debug/flexfuzz

run() {  # TARGET SECONDS
    local target=$1 seconds=$2
    local corpus=.build-fuzz/corpus/$target findings=.build-fuzz/findings/$target
    mkdir -p "$corpus" "$findings"
    # TOMLKit leaks on every document (Tests/Sanitizers/lsan.supp): checking each input for
    # leaks would make the TOML targets crawl, so they are checked at exit only. Their RSS
    # grows with those leaks too (about 350 MB a minute), so they fuzz in libFuzzer's fork
    # mode: child processes of at most a few minutes each, which free what leaked.
    local options=(-detect_leaks=1 -rss_limit_mb=2048)
    [[ $target == program || $target == storm-config ]] && options=(-detect_leaks=0 -rss_limit_mb=4096 -fork=1)
    echo "fuzz: $target for ${seconds}s" >&2
    LSAN_OPTIONS=suppressions=$PWD/Tests/Sanitizers/lsan.supp FLEXFUZZ_TARGET=$target "$binary" "$corpus" "Tests/Fuzz/seeds/$target" \
        -max_total_time="$seconds" -timeout=1 -max_len=65536 "${options[@]}" \
        -artifact_prefix="$findings/" -print_final_stats=1 2>&1 \
        | grep -E "^(#[0-9]+[[:space:]]+(INITED|DONE)|#[0-9]+: cov:|stat::number_of_executed_units|stat::peak_rss_mb|Done|==[0-9]+==|SUMMARY|.*(ERROR|Fatal|Precondition|crash|deadly|timeout|leak))" \
        | awk '/^#[0-9]+: cov:/ { last = $0; next } { print } END { if (last) print last }' || true
    # libFuzzer leaves every finding in $findings: any file there fails the run.
    if compgen -G "$findings/*" > /dev/null; then
        echo "fuzz: $target: findings in $findings:" >&2
        ls -l "$findings" >&2
        return 1
    fi
}

case "$1" in
    all) for t in "${targets[@]}"; do run "$t" "${2:?seconds}"; done ;;
    smoke) for t in "${targets[@]}"; do run "$t" 10; done ;;
    *)
        [[ " ${targets[*]} " == *" $1 "* ]] || { echo "unknown target $1 (bash Scripts/fuzz.sh list)" >&2; exit 2; }
        run "$1" "${2:?seconds}"
        ;;
esac
