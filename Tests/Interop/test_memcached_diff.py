"""The randomized differential test (memcached_diff.py) as part of the suite: seeded
operation streams over the text, meta and binary protocols and UDP go to memcached
and to flexkvs, and every reply must match byte for byte (0 differences, and every
STAT name memcached prints printed by flexkvs too). Under dma steering binary over UDP
takes paths of its own (SETs placed by the pipeline, GETs it parsed answered without
the protocol handler), so a stream with binary UDP goes to flexkvs --steering dma too."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from support import flexkvs_path, memcached_path

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("seed, protocols, flexkvs_args, paths", [
    (1, "text,meta,binary,udp", "", []), (2, "text,meta,binary,udp", "", []), (3, "text,meta,binary,udp", "", []),
    (4, "text,meta,binary,udpbin", "--steering dma", ["parsed_gets", "placed_sets"]),
])
def test_replies_match_memcached(seed, protocols, flexkvs_args, paths, tmp_path):
    flexkvs = flexkvs_path()
    memcached = memcached_path()
    assert flexkvs.exists(), f"flexkvs binary not found at {flexkvs} (swift build first)"
    assert memcached, "memcached is not installed (apt-get install memcached)"
    ops = int(os.environ.get("DIFF_OPS", "30000"))
    report = tmp_path / "differences.txt"
    run = subprocess.run(
        [sys.executable, str(HERE / "memcached_diff.py"), "--flexkvs", str(flexkvs), "--memcached", memcached,
         "--seed", str(seed), "--ops", str(ops), "--protocols", protocols, "--flexkvs-args", flexkvs_args,
         "--report", str(report), "--quiet"] + [a for p in paths for a in ("--flexkvs-stat", p)],
        capture_output=True, text=True, timeout=600)
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-60:])
    assert run.returncode == 0, f"seed {seed} ({protocols}; flexkvs {flexkvs_args}): flexkvs and memcached differ\n{tail}"
    assert "differences=0" in run.stdout and "missing_stat_names=0" in run.stdout, tail
    # No reply datagram arrived after its exchange ended (a second reply to a request)
    # unless memcached sent one too.
    stale = re.search(r"stale_udp\(mc/fx\)=(\d+)/(\d+)", run.stdout)
    assert stale and int(stale.group(2)) <= int(stale.group(1)), tail
    # The paths this configuration exists for were taken.
    for p in paths:
        taken = re.search(r"^flexkvs %s=(\d+)$" % p, run.stdout, re.M)
        assert taken and int(taken.group(1)) > 0, f"flexkvs never took the {p} path\n{tail}"
