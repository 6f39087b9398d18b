#!/usr/bin/env bash
# Builds and runs the unit tests (not the integration suites) under a sanitizer:
#
#   bash Scripts/sanitize.sh address   AddressSanitizer + LeakSanitizer (.build-asan)
#   bash Scripts/sanitize.sh thread    ThreadSanitizer (.build-tsan)
#
# Any report fails the run. Suppressions, each with its reason, are in Tests/Sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
kind=${1:?address or thread}
case "$kind" in
    address) scratch=.build-asan
             export ASAN_OPTIONS=detect_leaks=1
             export LSAN_OPTIONS=suppressions=$PWD/Tests/Sanitizers/lsan.supp ;;
    thread)  scratch=.build-tsan
             export TSAN_OPTIONS="suppressions=$PWD/Tests/Sanitizers/tsan.supp report_signal_unsafe=0" ;;
    *) echo "usage: bash Scripts/sanitize.sh address|thread" >&2; exit 2 ;;
esac
swift build --build-tests --sanitize="$kind" --scratch-path "$scratch"
log=$(mktemp)
status=0
swift test --skip-build --disable-xctest --sanitize="$kind" --scratch-path "$scratch" --skip IntegrationTests 2>&1 | tee "$log" | grep -E "^(✔ Test run|✘)" || true
status=${PIPESTATUS[0]}
if grep -qE "ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer" "$log"; then
    grep -E -A12 "ERROR: AddressSanitizer|ERROR: LeakSanitizer|WARNING: ThreadSanitizer" "$log" | head -80
    echo "sanitize: $kind: reports above" >&2
    exit 1
fi
[[ $status -eq 0 ]] || { tail -20 "$log"; echo "sanitize: $kind: tests failed ($status)" >&2; exit 1; }
echo "sanitize: $kind: clean"
