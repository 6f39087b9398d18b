#!/usr/bin/env bash
# Sets up the machine, builds everything (the tests run the built `flexbench` and
# `flexkvs`), and runs the whole test suite: the Swift unit tests, the Swift
# integration tests (suites named *IntegrationTests, tagged .integration: they start
# servers, processes, DPDK devices and network namespaces), then the interop tests
# (Tests/Interop: real memcached clients and tools against flexkvs, and the randomized
# byte-for-byte comparison with memcached 1.6), the unit tests under ASan and TSan,
# and a 10-second smoke run of every fuzz target. Some tests need root (network namespaces) and DPDK vdevs.
#
#   bash Scripts/test.sh          everything (what CI runs)
#   bash Scripts/test.sh --fast   build, then the unit tests only (seconds; no setup)
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ "${1:-}" == "--fast" ]]; then
    swift build --build-tests
    exec swift test --skip-build --disable-xctest --skip IntegrationTests
fi
bash Scripts/setup.sh
swift build
swift test --disable-xctest --skip IntegrationTests
# Serially: several tests start busy-polling DPDK processes (servers, reflectors,
# load generators); run side by side on a 2-core machine they starve each other.
swift test --skip-build --disable-xctest --no-parallel --filter IntegrationTests
# The unit tests again under AddressSanitizer (with leaks) and ThreadSanitizer: any
# report fails the run.
bash Scripts/sanitize.sh address
bash Scripts/sanitize.sh thread
# Every fuzz target for 10 s from its committed seeds (libFuzzer + ASan): a crash, a
# failed check, a leak or a hang fails the run (Scripts/fuzz.sh for longer campaigns).
bash Scripts/fuzz.sh smoke
# Strict: in CI every client and tool is installed, so a skip is a failure.
FLEXKVS=.build/debug/flexkvs INTEROP_STRICT=1 python3 -m pytest -q -p no:cacheprovider Tests/Interop
