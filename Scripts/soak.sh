#!/usr/bin/env bash
# Soak test: bash Scripts/soak.sh kvs MINUTES (see Scripts/soak.py for what it does and
# checks). Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?usage: bash Scripts/soak.sh kvs MINUTES}
minutes=${2:?usage: bash Scripts/soak.sh kvs MINUTES}
case "$server" in
    kvs) swift build -c release --product flexkvs >&2
         exec python3 Scripts/soak.py kvs "$minutes" --binary .build/release/flexkvs ;;
    *) echo "soak: only kvs so far (flexstorm needs nodes that rejoin after a restart first)" >&2; exit 2 ;;
esac
