"""The randomized differential test (memcached_diff.py) as part of the suite: seeded
operation streams over the text, meta and binary protocols and UDP go to memcached
and to flexkvs, and every reply must match byte for byte (0 differences, and every
STAT name memcached prints printed by flexkvs too)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import flexkvs_path, memcached_path

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replies_match_memcached(seed, tmp_path):
    flexkvs = flexkvs_path()
    memcached = memcached_path()
    assert flexkvs.exists(), f"flexkvs binary not found at {flexkvs} (swift build first)"
    assert memcached, "memcached is not installed (apt-get install memcached)"
    ops = int(os.environ.get("DIFF_OPS", "30000"))
    report = tmp_path / "differences.txt"
    run = subprocess.run(
        [sys.executable, str(HERE / "memcached_diff.py"), "--flexkvs", str(flexkvs), "--memcached", memcached,
         "--seed", str(seed), "--ops", str(ops), "--report", str(report), "--quiet"],
        capture_output=True, text=True, timeout=600)
    tail = "\n".join((run.stdout + run.stderr).splitlines()[-60:])
    assert run.returncode == 0, f"seed {seed}: flexkvs and memcached differ\n{tail}"
    assert "differences=0" in run.stdout and "missing_stat_names=0" in run.stdout, tail
