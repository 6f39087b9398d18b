#!/usr/bin/env bash
# Soak test: bash Scripts/soak.sh kvs|storm MINUTES [--mode demux|steered] (see
# Scripts/soak.py for what each does and checks). Builds the release binary first;
# storm needs root (network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."
server=${1:?usage: bash Scripts/soak.sh kvs|storm MINUTES}
minutes=${2:?usage: bash Scripts/soak.sh kvs|storm MINUTES}
shift 2
case "$server" in
    kvs) swift build -c release --product flexkvs >&2
         exec python3 Scripts/soak.py kvs "$minutes" --binary .build/release/flexkvs ;;
    storm) swift build -c release --product flexstorm >&2
         exec python3 Scripts/soak.py storm "$minutes" --binary .build/release/flexstorm "$@" ;;
    *) echo "soak: kvs or storm" >&2; exit 2 ;;
esac
