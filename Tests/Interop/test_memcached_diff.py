"""The randomized differential test (memcached_diff.py) as part of the suite: seeded
operation streams over the text, meta and binary protocols and UDP go to memcached
and to flexkvs, and every reply must match byte for byte (0 differences, and every
STAT name memcached prints printed by flexkvs too). Under dma steering binary over UDP
takes paths of its own (SETs placed by the pipeline, GETs it parsed answered without
the protocol handler), so a stream with binary UDP goes to flexkvs --steering dma too."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import flexkvs_path, memcached_path

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("seed, protocols, flexkvs_args", [
    (1, "text,meta,binary,udp", ""), (2, "text,meta,binary,udp", ""), (3, "text,meta,binary,udp", ""),
    (4, "text,meta,binary,udpbin", "--steering dma"),
])
def test_replies_match_memcached(seed, protocols, flexkvs_args, tmp_path):
    flexkvs = flexkvs_path()
    memcached = memcached_path()
    assert flexkvs.exists(), f"flexkvs binary not found at {flexkvs} (swift build first)"
    assert memcached, "memcached is not installed (apt-get install memcached)"
    ops = int(os.environ.get("DIFF_OPS", "30000"))
    report = tmp_path / "differences.txt"
    run = subprocess.run(
        [sys.executable, str(HERE / "memcached_diff.py"), "--flexkvs", str(flexkvs), "--memcached", memcached,
         "--seed", str(seed), "--ops", str(ops), "--protocols", protocols, "--flexkvs-args", flexkvs_args,
         "--report", str(report), "--quiet"],
        capture_output=True, text=True, timeout=600)
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-60:])
    assert run.returncode == 0, f"seed {seed} ({protocols}; flexkvs {flexkvs_args}): flexkvs and memcached differ\n{tail}"
    assert "differences=0" in run.stdout and "missing_stat_names=0" in run.stdout, tail
