#!/usr/bin/env bash
# Sets up the machine, builds everything (the tests run the built `flexbench`), and runs
# the whole test suite. Some tests need root (network namespaces) and DPDK vdevs.
set -euo pipefail
cd "$(dirname "$0")/.."
bash Scripts/setup.sh
swift build
# Serially: several tests start busy-polling DPDK processes (servers, reflectors,
# load generators); run side by side on a 2-core machine they starve each other.
swift test --disable-xctest --no-parallel
