#!/usr/bin/env bash
# Installs the system packages Flex builds and tests against (Debian 12), if missing.
# Swift itself is expected on PATH (the project's machines have /opt/swift).
set -euo pipefail

packages=(libdpdk-dev libpcap-dev libpcre2-dev memcached libmemcached-tools iproute2 pkg-config)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
    echo "setup: installing ${missing[*]}"
    SUDO=""
    [[ $(id -u) -eq 0 ]] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v swift >/dev/null || { echo "setup: swift is not on PATH (install Swift 6.x)" >&2; exit 1; }
echo "setup: system packages present; $(swift --version 2>/dev/null | head -1)"
