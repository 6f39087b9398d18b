#!/usr/bin/env bash
# Installs what Flex builds and tests against (Debian 12), if missing: the system
# packages, the Debian packages the interop tests drive (Tests/Interop/apt-packages.txt:
# memcached, libmemcached's tools, twemproxy, ...), and the Python clients they use
# (Tests/Interop/requirements.txt). Swift itself is expected on PATH (the project's
# machines have /opt/swift).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(libdpdk-dev libpcap-dev libpcre2-dev libhyperscan-dev zlib1g-dev libbpf-dev iproute2 ethtool pkg-config python3 python3-pip)
while read -r p; do [[ -n "$p" ]] && packages+=("$p"); done < Tests/Interop/apt-packages.txt
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
SUDO=""
[[ $(id -u) -eq 0 ]] || SUDO="sudo"
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# A build made before libbpf-dev was there holds an empty eBPF program, which an
# incremental build keeps (the program's source did not change): drop it, and the next
# `swift build` compiles the program.
if [[ -f /usr/include/bpf/bpf_helpers.h ]]; then
    for f in .build/plugins/outputs/*/FlexKVS/destination/BPFProgramPlugin/BPFObject+*.swift; do
        [[ -f $f ]] && grep -q '= ""' "$f" && { echo "setup: dropping $f (built without libbpf-dev)"; rm -f "$f"; }
    done
fi
# The python3 on PATH runs the interop tests; install their clients for it.
if ! python3 -c "import pytest, pymemcache, pylibmc, bmemcached, memcache" 2>/dev/null; then
    echo "setup: pip install -r Tests/Interop/requirements.txt"
    # Debian's own python3 refuses system-wide pip installs (PEP 668) unless told.
    python3 -m pip install -q --disable-pip-version-check -r Tests/Interop/requirements.txt 2>/dev/null \
        || python3 -m pip install -q --disable-pip-version-check --break-system-packages -r Tests/Interop/requirements.txt
    python3 -c "import pytest, pymemcache, pylibmc, bmemcached, memcache"
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (install Swift 6.x)" >&2; exit 1; }
echo "setup: system packages and Python clients present; $(swift --version 2>/dev/null | head -1)"
