"""Interop tests: flexkvs driven by the real clients and tools memcached users run.

Every check runs first against memcached (proving the test itself is right)
and then against flexkvs, so a test that fails only on flexkvs marks a real
divergence.  Servers are started on free loopback ports by the tests and
stopped at teardown.

    FLEXKVS=/path/to/flexkvs python3 -m pytest -q Tests/Interop/test_clients.py

FLEXKVS defaults to .build/debug/flexkvs relative to the repository root;
MEMCACHED defaults to `memcached` on PATH.  Tools and client libraries are
listed in requirements.txt (pip) and apt-packages.txt (Debian); a test
skips only when its tool is not installed.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from support import HOST, flexkvs_path, free_port, memcached_path
KINDS = ["memcached", "flexkvs"]
N_KEYS = 2000
BIG_SIZE = 500 * 1024
MEMCACHED_TOOL = "/usr/share/memcached/scripts/memcached-tool"


# --------------------------------------------------------------------------
# Server management
# --------------------------------------------------------------------------

def wait_for_memcache(port, proc, log_path, timeout=15.0):
    """Wait until the server answers `version` on the port."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"server exited with {proc.returncode} during startup:\n"
                + Path(log_path).read_text(errors="replace"))
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                s.sendall(b"version\r\n")
                data = s.recv(256)
                if data.startswith(b"VERSION "):
                    return
                last = data
        except OSError as e:
            last = e
        time.sleep(0.05)
    raise RuntimeError(f"server on port {port} not ready after {timeout}s: {last!r}")


def wait_for_port(port, proc, log_path, timeout=15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(
                f"process exited with {proc.returncode} during startup:\n"
                + Path(log_path).read_text(errors="replace"))
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port} after {timeout}s")


class Server:
    def __init__(self, kind, port, proc, log_path):
        self.kind = kind
        self.port = port
        self.proc = proc
        self.log_path = log_path

    @property
    def addr(self):
        return (HOST, self.port)

    @property
    def spec(self):
        return f"{HOST}:{self.port}"

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log(self):
        try:
            return Path(self.log_path).read_text(errors="replace")
        except OSError:
            return ""


def start_server(kind, logdir):
    if kind == "flexkvs":
        binary = flexkvs_path()
        if not binary.exists():
            pytest.fail(f"flexkvs binary not found at {binary} "
                        "(set FLEXKVS or build with `swift build`)")
        argv = [str(binary)]
    elif kind == "memcached":
        binary = memcached_path()
        if binary is None:
            pytest.skip("memcached not installed (Debian package `memcached`)")
        argv = [binary]
        if os.geteuid() == 0:
            argv += ["-u", "root"]
    else:
        raise ValueError(kind)
    last_err = None
    for _ in range(3):
        port = free_port()
        log_path = os.path.join(logdir, f"{kind}-{port}.log")
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                argv + ["-p", str(port), "-U", "0", "-l", HOST, "-m", "64",
                        "-t", "1", "-c", "1024", "-I", "1m"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            wait_for_memcache(port, proc, log_path)
            return Server(kind, port, proc, log_path)
        except RuntimeError as e:  # e.g. the port was taken meanwhile
            last_err = e
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    raise RuntimeError(f"could not start {kind}: {last_err}")


@pytest.fixture(params=KINDS)
def kind(request):
    return request.param


@pytest.fixture
def make_server(tmp_path):
    started = []

    def make(kind):
        srv = start_server(kind, str(tmp_path))
        started.append(srv)
        return srv

    yield make
    for srv in started:
        srv.stop()


@pytest.fixture
def server(kind, make_server):
    return make_server(kind)


@pytest.fixture
def three_servers(kind, make_server):
    return [make_server(kind) for _ in range(3)]


# --------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------

def need_tool(*names, package):
    for n in names:
        p = shutil.which(n)
        if p:
            return p
    pytest.skip(f"none of {', '.join(names)} installed (Debian package `{package}`)")


def pymemcache_mod():
    return pytest.importorskip(
        "pymemcache", reason="pymemcache not installed (pip install pymemcache)")


def base_client(addr, **kw):
    """A pymemcache client that waits for (and checks) every storage reply."""
    pymemcache_mod()
    from pymemcache.client.base import Client
    kw.setdefault("timeout", 10)
    kw.setdefault("connect_timeout", 5)
    return Client(addr, default_noreply=False, **kw)


def keys_values(prefix, n=N_KEYS):
    return {f"{prefix}:{i:05d}": f"value-{prefix}-{i}-{'x' * (i % 50)}".encode()
            for i in range(n)}


def raw(addr, data, until=b"END\r\n", timeout=5.0):
    """Send raw bytes; read until `until` is at the end of the reply (or timeout)."""
    with socket.create_connection(addr, timeout=timeout) as s:
        s.sendall(data)
        buf = b""
        deadline = time.monotonic() + timeout
        while not buf.endswith(until) and time.monotonic() < deadline:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
        return buf


def stat_int(addr, name):
    reply = raw(addr, b"stats\r\n")
    m = re.search(rb"^STAT " + re.escape(name.encode()) + rb" (\d+)\r$", reply, re.M)
    assert m, f"`stats` reply lacks STAT {name}: {reply[:300]!r}"
    return int(m.group(1))


def server_sockets(server):
    """Sockets the server process holds open (Linux /proc), or '?'."""
    try:
        fd_dir = Path(f"/proc/{server.proc.pid}/fd")
        return sum(1 for f in fd_dir.iterdir()
                   if os.readlink(f).startswith("socket:"))
    except OSError:
        return "?"


def describe_missing(expected, got, label):
    missing = sorted(k for k in expected if k not in got)
    wrong = sorted(k for k in expected if k in got and got[k] != expected[k])
    return (f"{label}: expected {len(expected)} keys back, got {len(got)}; "
            f"{len(missing)} missing (first: {missing[:5]}), "
            f"{len(wrong)} with wrong values (first: {wrong[:5]})")


def multiget(fn, keys, what, note=None):
    """Call a client's multi-get; turn an exception into a readable failure."""
    if note is None:
        note = f"one text `get` line of {len('get ' + ' '.join(keys)) + 2} bytes"
    try:
        return fn(list(keys))
    except Exception as e:  # the client's own error for the server's reply
        pytest.fail(f"{what} of {len(keys)} keys ({note}) "
                    f"raised {type(e).__name__}: {e}")


def run(argv, timeout=60, **kw):
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          stdin=subprocess.DEVNULL, timeout=timeout, **kw)


# --------------------------------------------------------------------------
# 1. pymemcache
# --------------------------------------------------------------------------

def test_pymemcache_set_get_get_many_2000(server):
    c = base_client(server.addr)
    kv = keys_values("pm")
    for k, v in kv.items():
        assert c.set(k, v) is True, f"set {k} not STORED"
    for k, v in kv.items():
        assert c.get(k) == v, f"get {k}"
    got = multiget(c.get_many, kv, "pymemcache get_many")
    assert got == kv, describe_missing(kv, got, f"get_many of {len(kv)} keys (one `get` line)")
    c.close()


def test_pymemcache_set_many_get_many_2000(server):
    c = base_client(server.addr)
    kv = keys_values("pmm")
    failed = c.set_many(kv)
    assert failed == [], f"set_many failed keys: {failed[:10]}"
    got = multiget(c.get_many, kv, "pymemcache get_many")
    assert got == kv, describe_missing(kv, got, "get_many of 2000 keys")
    c.close()


@pytest.mark.parametrize("n", [23, 24, 100, 390])
def test_pymemcache_get_many_sizes(server, n):
    """Multigets whose `get` line stays under 4 KB (keys of 8 bytes)."""
    c = base_client(server.addr)
    kv = {f"gm:{i:05d}": f"v{i}".encode() for i in range(n)}
    assert c.set_many(kv) == []
    got = multiget(c.get_many, kv, "pymemcache get_many")
    assert got == kv, describe_missing(kv, got, f"`get` of {n} keys")
    got = multiget(c.gets_many, kv, "pymemcache gets_many")
    assert {k: v[0] for k, v in got.items()} == kv, describe_missing(
        kv, {k: v[0] for k, v in got.items()}, f"`gets` of {n} keys")
    c.close()


def test_pymemcache_gets_cas(server):
    c = base_client(server.addr)
    assert c.set("casme", b"v1")
    v, token = c.gets("casme")
    assert v == b"v1" and token is not None
    assert c.cas("casme", b"v2", token) is True
    assert c.get("casme") == b"v2"
    assert c.cas("casme", b"v3", token) is False, "cas with a stale token must be EXISTS"
    assert c.get("casme") == b"v2"
    assert c.cas("nokey-cas", b"v", token) is None, "cas on a missing key must be NOT_FOUND"
    got = c.gets_many(["casme", "nokey-cas"])
    assert set(got) == {"casme"} and got["casme"][0] == b"v2"
    c.close()


def test_pymemcache_incr_decr(server):
    c = base_client(server.addr)
    assert c.set("ctr", b"10")
    assert c.incr("ctr", 5) == 15
    assert c.decr("ctr", 3) == 12
    assert c.decr("ctr", 100) == 0, "decr below zero must clamp to 0"
    assert c.incr("ctr", 2**64 - 1) == 2**64 - 1
    assert c.incr("ctr", 1) == 0, "incr must wrap at 2**64"
    assert c.incr("nokey-ctr", 1) is None
    assert c.decr("nokey-ctr", 1) is None
    assert c.set("notnum", b"abc")
    with pytest.raises(Exception) as ei:
        c.incr("notnum", 1)
    assert "CLIENT_ERROR" in str(ei.value) or "non-numeric" in str(ei.value)
    c.close()


def test_pymemcache_add_replace_append_prepend(server):
    c = base_client(server.addr)
    assert c.add("arap", b"mid") is True
    assert c.add("arap", b"other") is False
    assert c.replace("arap", b"MID") is True
    assert c.replace("nokey-arap", b"x") is False
    assert c.append("arap", b">>") is True
    assert c.prepend("arap", b"<<") is True
    assert c.get("arap") == b"<<MID>>"
    assert c.append("nokey-arap", b"x") is False
    assert c.prepend("nokey-arap", b"x") is False
    assert c.get("nokey-arap") is None
    c.close()


def test_pymemcache_delete(server):
    c = base_client(server.addr)
    assert c.set("del", b"x")
    assert c.delete("del") is True
    assert c.get("del") is None
    assert c.delete("del") is False
    kv = {f"dm{i}": b"v" for i in range(50)}
    assert c.set_many(kv) == []
    assert c.delete_many(list(kv)) is True
    for k in kv:
        assert c.get(k) is None, f"{k} still there after delete_many"
    c.close()


def test_pymemcache_touch(server):
    c = base_client(server.addr)
    assert c.set("t-short", b"a", expire=1)
    assert c.set("t-long", b"b", expire=100)
    assert c.touch("t-short", 100) is True
    assert c.touch("t-long", 1) is True
    assert c.touch("nokey-touch", 10) is False
    time.sleep(2.5)
    assert c.get("t-short") == b"a", "touch(100) did not extend the expiry"
    assert c.get("t-long") is None, "touch(1) did not shorten the expiry"
    c.close()


def test_pymemcache_flush_all(server):
    c = base_client(server.addr)
    kv = {f"fl{i}": b"v" for i in range(100)}
    assert c.set_many(kv) == []
    assert c.flush_all() is True
    for k in kv:
        assert c.get(k) is None, f"{k} survived flush_all"
    assert c.set("after-flush", b"y")
    assert c.get("after-flush") == b"y"
    c.close()


def test_pymemcache_stats(server):
    c = base_client(server.addr)
    before = c.stats()
    for field in (b"pid", b"uptime", b"version", b"curr_items", b"cmd_get",
                  b"cmd_set", b"get_hits", b"get_misses", b"curr_connections"):
        assert field in before, f"stats lacks {field!r}"
    for i in range(10):
        assert c.set(f"st{i}", b"v")
    for i in range(10):
        c.get(f"st{i}")
    c.get("st-missing")
    after = c.stats()
    assert after[b"cmd_set"] - before[b"cmd_set"] == 10
    assert after[b"get_hits"] - before[b"get_hits"] == 10
    assert after[b"get_misses"] - before[b"get_misses"] == 1
    assert after[b"curr_items"] - before[b"curr_items"] == 10
    settings = c.stats("settings")
    assert b"maxbytes" in settings and b"item_size_max" in settings, sorted(settings)[:20]
    assert int(settings[b"item_size_max"]) == 1024 * 1024
    c.close()


def test_pymemcache_large_value(server):
    c = base_client(server.addr)
    big = os.urandom(BIG_SIZE)
    assert c.set("big", big) is True
    assert c.get("big") == big
    got = c.get_many(["big", "small-nokey"])
    assert got == {"big": big}
    # Larger than -I 1m must be refused, not stored.
    with pytest.raises(Exception):
        c.set("toobig", b"z" * (1024 * 1024 + 1))
    c2 = base_client(server.addr)
    assert c2.get("toobig") is None
    assert c2.get("big") == big
    c.close()
    c2.close()


N_BIG_MULTI = 20  # 20 x 500 KB: a 10 MB reply, yet under 23 keys


def big_values(prefix):
    return {f"{prefix}{i:02d}": os.urandom(BIG_SIZE) for i in range(N_BIG_MULTI)}


def check_large_multiget(client, prefix, multi, what, note=""):
    """Stores 20 x 500 KB values, reads each back, then gets them all at once three
    times (a 10 MB reply the client reads at its own pace)."""
    kv = big_values(prefix)
    for k, v in kv.items():
        assert client.set(k, v) is True
    for k, v in kv.items():
        assert client.get(k) == v, f"single get {k}"
    for attempt in range(3):
        got = multiget(multi, kv, f"{what} (round {attempt + 1})",
                       note=f"{note}reply of {N_BIG_MULTI * BIG_SIZE} bytes")
        assert got == kv, describe_missing(kv, got, f"{what} of 20 x 500 KB")


def test_pymemcache_get_many_large_reply(server):
    """One multiget of 20 x 500 KB values: a 10 MB reply read by a Python client."""
    c = base_client(server.addr)
    check_large_multiget(c, "pmbig", c.get_many, "pymemcache get_many")
    c.close()


def keys_per_server(kv, servers):
    """How many of `kv`'s keys each server holds (single-key gets straight to each);
    every key is on exactly one, and each server has more than a tenth of them."""
    counts = []
    for s in servers:
        c = base_client(s.addr)
        counts.append(sum(1 for k in kv if c.get(k) is not None))
        c.close()
    assert sum(counts) == len(kv), f"keys per server {counts}, expected total {len(kv)}"
    assert all(n > len(kv) // 10 for n in counts), f"keys not spread over the servers: {counts}"
    return counts


def test_pymemcache_hashclient_three_servers(three_servers):
    pymemcache_mod()
    from pymemcache.client.hash import HashClient
    hc = HashClient([s.addr for s in three_servers], default_noreply=False,
                    timeout=10, connect_timeout=5)
    kv = keys_values("hc")
    for k, v in kv.items():
        assert hc.set(k, v) is True, f"set {k}"
    counts = keys_per_server(kv, three_servers)
    for k, v in kv.items():
        assert hc.get(k) == v, f"HashClient get {k}"
    got = multiget(hc.get_many, kv, "HashClient.get_many",
                   note="one text `get` line per server")
    assert got == kv, describe_missing(
        kv, got, f"HashClient.get_many (one `get` per server, ~{counts} keys each)")
    hc.close()


def test_pymemcache_timeout_and_close_with_replies_unread(server):
    pymemcache_mod()
    c = base_client(server.addr)
    big = os.urandom(BIG_SIZE)
    assert c.set("big", big)
    baseline = stat_int(server.addr, "curr_connections")

    # A client whose command never completes times out and closes.
    tc = base_client(server.addr, timeout=0.5)
    with pytest.raises((socket.timeout, TimeoutError, OSError)):
        tc.raw_command(b"set half 0 0 1000\r\n" + b"x" * 10)
    tc.close()

    # Clients that pipeline big replies and close without reading them.
    for _ in range(5):
        uc = base_client(server.addr, timeout=0.5)
        uc._connect()
        uc.sock.sendall(b"get big\r\n" * 40 + b"stats\r\nversion\r\n")
        uc.close()

    # A client that times out in the middle of a large multi-value reply.
    sc = base_client(server.addr, timeout=0.5)
    sc._connect()
    sc.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sc.sock.sendall(b"get big big big big\r\n")
    sc.sock.recv(1000)
    time.sleep(0.6)
    sc.close()

    # The server carries on, correct for a fresh client.
    fresh = base_client(server.addr)
    assert fresh.version()
    assert fresh.get("half") is None, "a set whose data never arrived was stored"
    assert fresh.get("big") == big
    assert fresh.set("after", b"ok") and fresh.get("after") == b"ok"
    fresh.close()
    c.close()
    deadline = time.monotonic() + 5
    while True:
        now = stat_int(server.addr, "curr_connections")
        if now <= baseline or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    fds = server_sockets(server)
    assert now <= baseline, (
        f"`stats` curr_connections is {now} after the abandoned clients closed, "
        f"expected <= {baseline} (as before them); the server process holds "
        f"{fds} socket fds")


def test_pymemcache_slow_reader_pipelined_gets(server):
    """A client pipelines 12 gets of a 500 KB value and reads the 6 MB later."""
    c = base_client(server.addr)
    big = os.urandom(BIG_SIZE)
    assert c.set("big", big)
    n = 12
    slow = base_client(server.addr, timeout=10)
    slow._connect()
    slow.sock.sendall(b"get big\r\n" * n + b"version\r\n")
    time.sleep(0.5)  # busy elsewhere; the server must wait, not drop us
    buf = b""
    closed = None
    while b"\r\nVERSION " not in buf[-200:]:
        try:
            chunk = slow.sock.recv(1 << 20)
        except OSError as e:
            closed = repr(e)
            break
        if not chunk:
            closed = "EOF"
            break
        buf += chunk
    slow.close()
    values = buf.count(b"VALUE big 0 %d\r\n" % BIG_SIZE)
    assert closed is None and values == n, (
        f"sent `get big` x{n} + `version` (reply {n * BIG_SIZE} bytes), read after "
        f"0.5 s: got {values} VALUEs, {len(buf)} bytes, then {closed}")
    assert c.get("big") == big
    c.close()


# --------------------------------------------------------------------------
# 2. pylibmc (libmemcached)
# --------------------------------------------------------------------------

def pylibmc_mod():
    return pytest.importorskip(
        "pylibmc", reason="pylibmc not installed (pip install pylibmc; needs "
                          "libmemcached-dev and zlib1g-dev)")


@pytest.fixture(params=[False, True], ids=["text", "binary"])
def binary(request):
    return request.param


def pylibmc_client(servers, binary, **behaviors):
    pylibmc = pylibmc_mod()
    b = {"cas": True, "connect_timeout": 5000, "receive_timeout": 10_000_000,
         "send_timeout": 10_000_000}
    b.update(behaviors)
    return pylibmc.Client([s.spec for s in servers], binary=binary, behaviors=b)


def test_pylibmc_basic(server, binary):
    mc = pylibmc_client([server], binary)
    assert mc.set("plk", b"value") is True
    assert mc.get("plk") == b"value"
    assert mc.add("plk", b"x") is False
    assert mc.add("pl-add", b"a") is True
    assert mc.replace("pl-add", b"b") is True
    assert mc.append("pl-add", b"c") is True
    assert mc.prepend("pl-add", b"0") is True
    assert mc.get("pl-add") == b"0bc"
    assert mc.delete("pl-add") is True
    assert mc.get("pl-add") is None
    assert mc.touch("plk", 100) is True
    assert "plk" in mc
    stats = mc.get_stats()
    assert len(stats) == 1 and "curr_items" in stats[0][1]


def test_pylibmc_get_multi_2000(server, binary):
    mc = pylibmc_client([server], binary)
    kv = keys_values("plm")
    failed = mc.set_multi(kv)
    assert failed == [], f"set_multi failed keys {failed[:10]}"
    for k in list(kv)[:50]:
        assert mc.get(k) == kv[k]
    got = multiget(mc.get_multi, kv, f"pylibmc {'binary' if binary else 'text'} get_multi",
                   note="binary getkq pipeline" if binary else None)
    assert got == kv, describe_missing(kv, got, "pylibmc get_multi of 2000 keys")


def test_pylibmc_incr_decr(server, binary):
    mc = pylibmc_client([server], binary)
    mc.set("plc", b"10")
    assert mc.incr("plc", 5) == 15
    assert mc.decr("plc", 20) == 0
    assert mc.incr("plc") == 1
    pylibmc = pylibmc_mod()
    with pytest.raises(pylibmc.NotFound):
        mc.incr("nokey-plc")
    mc.set_multi({"m1": b"1", "m2": b"2"})
    mc.incr_multi(["m1", "m2"], delta=10)
    assert mc.get_multi(["m1", "m2"]) == {"m1": b"11", "m2": b"12"}


def test_pylibmc_cas(server, binary):
    mc = pylibmc_client([server], binary)
    mc.set("plcas", b"a")
    v, token = mc.gets("plcas")
    assert v == b"a" and token
    assert mc.cas("plcas", b"b", token) is True
    assert mc.cas("plcas", b"c", token) is False
    assert mc.get("plcas") == b"b"


def test_pylibmc_large_values(server, binary):
    mc = pylibmc_client([server], binary)
    values = {f"plbig{i}": os.urandom(BIG_SIZE - i * 1000) for i in range(4)}
    for k, v in values.items():
        assert mc.set(k, v) is True
    for k, v in values.items():
        assert mc.get(k) == v, f"{k} ({len(v)} bytes) did not round-trip"
    assert mc.get_multi(list(values)) == values
    check_large_multiget(mc, "plbigm", mc.get_multi, "pylibmc get_multi")


def test_pylibmc_ketama_three_servers(three_servers, binary):
    mc = pylibmc_client(three_servers, binary, ketama=True)
    kv = keys_values("plk")
    for k, v in kv.items():
        assert mc.set(k, v) is True, f"set {k}"
    per_server = keys_per_server(kv, three_servers)
    for k, v in kv.items():
        assert mc.get(k) == v
    got = multiget(mc.get_multi, kv, "pylibmc ketama get_multi",
                   note="binary getkq pipelines" if binary
                   else "one text `get` line per server")
    assert got == kv, describe_missing(
        kv, got, f"ketama get_multi over 3 servers ({per_server} keys each)")


# --------------------------------------------------------------------------
# 3. python-binary-memcached
# --------------------------------------------------------------------------

def test_bmemcached_binary_protocol(server):
    bmemcached = pytest.importorskip(
        "bmemcached", reason="python-binary-memcached not installed "
                             "(pip install python-binary-memcached)")
    c = bmemcached.Client([server.spec], socket_timeout=10)
    assert c.set("bk", b"bv") is True
    assert c.get("bk") == b"bv"
    kv = keys_values("bm")
    assert c.set_multi(kv) == [], "set_multi reported failed keys"
    got = multiget(c.get_multi, kv, "bmemcached get_multi",
                   note="binary getkq pipeline")
    assert got == kv, describe_missing(kv, got, "bmemcached get_multi (getkq pipeline)")
    assert c.set("bcnt", 10) is True
    assert c.incr("bcnt", 5) == 15
    assert c.decr("bcnt", 20) == 0
    assert c.delete("bk") is True
    assert c.get("bk") is None
    big = os.urandom(BIG_SIZE)
    assert c.set("bbig", big) is True
    assert c.get("bbig") == big
    stats = c.stats()
    assert list(stats) == [server.spec]
    st = stats[server.spec]
    for field in ("pid", "curr_items", "cmd_get", "cmd_set"):
        assert field in st, f"binary STAT lacks {field}: {sorted(st)[:20]}"
    assert int(st["curr_items"]) == len(kv) + 2
    c.disconnect_all()


def test_python_memcached_stats_parse(server):
    """python-memcached reads `stats`, `stats slabs` and `stats items` into dicts; a
    line of another shape (flexkvs once printed `STAT segment_size`) breaks it."""
    memcache = pytest.importorskip("memcache", reason="python-memcached not installed (pip install python-memcached)")
    c = memcache.Client([f"{HOST}:{server.port}"])
    for i in range(50):
        assert c.set(f"pm{i}", "x" * (10 + i * 40))
    assert c.get("pm3") == "x" * 130
    (_, general), = c.get_stats()
    assert int(general["curr_items"]) == 50
    (_, slabs), = c.get_slab_stats()
    classes = {k: v for k, v in slabs.items() if k.isdigit()}
    assert classes and all("chunk_size" in v and "used_chunks" in v for v in classes.values()), slabs
    assert sum(int(v["used_chunks"]) for v in classes.values()) == 50
    (_, items), = c.get_stats("items")
    assert sum(int(v) for k, v in items.items() if k.endswith(":number")) == 50
    c.disconnect_all()


def test_bmemcached_get_multi_large_reply(server):
    """get_multi of 20 x 500 KB values over binary: getkq x 20 + noop, 10 MB back."""
    bmemcached = pytest.importorskip(
        "bmemcached", reason="python-binary-memcached not installed "
                             "(pip install python-binary-memcached)")
    c = bmemcached.Client([server.spec], socket_timeout=10)
    check_large_multiget(c, "bmbig", c.get_multi, "bmemcached get_multi", note="binary getkq pipeline, ")
    c.disconnect_all()


# --------------------------------------------------------------------------
# 4. libmemcached command-line tools
# --------------------------------------------------------------------------

PKG_TOOLS = "libmemcached-tools"


def test_libmemcached_copy_cat_rm_flush(server, tmp_path):
    memcp = need_tool("memccp", "memcp", package=PKG_TOOLS)
    memcat = need_tool("memccat", "memcat", package=PKG_TOOLS)
    memrm = need_tool("memcrm", "memrm", package=PKG_TOOLS)
    memflush = need_tool("memcflush", "memflush", package=PKG_TOOLS)
    src = tmp_path / "src"
    src.mkdir()
    files = {
        "hello.txt": b"hello, world\n",
        "empty.txt": b"",
        "blob.bin": os.urandom(300 * 1024),
        "lines.txt": b"".join(b"line %d\r\n" % i for i in range(1000)),
    }
    for name, data in files.items():
        (src / name).write_bytes(data)
    for proto in ([], ["--binary"]):
        r = run([memcp, f"--servers={server.spec}", *proto,
                 *[str(src / n) for n in files]])
        assert r.returncode == 0, f"memcp {proto}: {r.stderr.decode()}"
        for name, data in files.items():
            out = tmp_path / f"out-{name}"
            r = run([memcat, f"--servers={server.spec}", *proto, f"--file={out}", name])
            assert r.returncode == 0, f"memcat {proto} {name}: {r.stderr.decode()}"
            assert out.read_bytes() == data, f"memcat {proto} {name}: content differs"
            out.unlink()
    r = run([memrm, f"--servers={server.spec}", "hello.txt"])
    assert r.returncode == 0, r.stderr.decode()
    r = run([memcat, f"--servers={server.spec}", "hello.txt"])
    assert r.returncode != 0, "memcat of a removed key succeeded"
    r = run([memflush, f"--servers={server.spec}"])
    assert r.returncode == 0, r.stderr.decode()
    r = run([memcat, f"--servers={server.spec}", "blob.bin"])
    assert r.returncode != 0, "memcat after memflush succeeded"


def test_libmemcached_memdump_lists_keys(server):
    memdump = need_tool("memcdump", "memdump", package=PKG_TOOLS)
    c = base_client(server.addr)
    keys = {f"dump-{i}" for i in range(300)}
    for k in keys:
        assert c.set(k, b"v" * (len(k) * 7))
    c.close()
    # memcached only dumps items once its LRU maintainer has moved them to
    # the COLD LRU (about a second), so poll for a while.
    deadline = time.monotonic() + 10
    while True:
        r = run([memdump, f"--servers={server.spec}"])
        listed = set(r.stdout.decode(errors="replace").split())
        if (r.returncode == 0 and keys <= listed) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert r.returncode == 0, (
        f"memdump exited {r.returncode}: {r.stderr.decode().strip()!r}; "
        f"it sends `stats cachedump <class> 0` for class 0, 1, 2, ... and expects "
        f"`ITEM <key> [<n> b; <t> s]` lines closed by END")
    missing = keys - listed
    assert not missing, f"memdump did not list {len(missing)} of {len(keys)} keys"
    assert listed <= keys, f"memdump listed unknown keys {sorted(listed - keys)[:5]}"


def test_libmemcached_memstat(server):
    memstat = need_tool("memcstat", "memstat", package=PKG_TOOLS)
    c = base_client(server.addr)
    for i in range(25):
        assert c.set(f"ms{i}", b"v")
    c.close()
    for proto in ([], ["--binary"]):
        r = run([memstat, f"--servers={server.spec}", *proto])
        out = r.stdout.decode(errors="replace")
        assert r.returncode == 0, f"memstat {proto}: {r.stderr.decode()}"
        assert f"Server: {HOST} ({server.port})" in out, out[:300]
        m = re.search(r"^\s*curr_items: (\d+)$", out, re.M)
        assert m and int(m.group(1)) == 25, f"memstat {proto} curr_items: {out[:600]}"
        assert re.search(r"^\s*pid: \d+$", out, re.M), out[:300]
    r = run([memstat, f"--servers={server.spec}", "--server-version"])
    both = r.stdout.decode() + r.stderr.decode()  # libmemcached 1.1 prints it on stderr
    assert r.returncode == 0 and re.search(
        rf"^{re.escape(server.spec)} \d+\.\d+\.\d+", both, re.M), both


MEMSLAP_FAIL = re.compile(r"fail|error|CONNECTION|SERVER_ERROR|CLIENT_ERROR", re.I)


@pytest.mark.parametrize("test", ["get", "mget", "set"])
@pytest.mark.parametrize("proto", ["text", "binary"])
def test_libmemcached_memslap(server, test, proto):
    memslap = need_tool("memcslap", "memslap", package=PKG_TOOLS)
    n, conc = 2000, 2
    argv = [memslap, f"--servers={server.spec}", f"--test={test}",
            f"--execute-number={n}", f"--concurrency={conc}"]
    if proto == "binary":
        argv.append("--binary")
    r = run(argv, timeout=120)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, out
    assert not MEMSLAP_FAIL.search(out), f"memslap --test={test} reported errors:\n{out}"
    m = re.search(r"Time to (get|mget|set)\s+(\d+) keys by\s+(\d+) threads", out)
    assert m, out
    assert m.group(1) == test and int(m.group(2)) == n * conc, \
        f"memslap --test={test} ran {m.group(2)} keys, expected {n * conc}:\n{out}"
    # The server must still be fine afterwards.
    c = base_client(server.addr)
    assert c.version()
    c.close()


@pytest.mark.parametrize("division", [1, 50])
def test_libmemcached_memaslap(server, division):
    memaslap = need_tool("memcaslap", "memaslap", package=PKG_TOOLS)
    r = run([memaslap, f"--servers={server.spec}", "--execute_number=5000",
             "--threads=1", "--concurrency=4", "--verify=1",
             f"--division={division}"], timeout=120)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    assert r.returncode == 0, out
    stats = dict(re.findall(r"^(\w+): (\d+)$", out, re.M))
    assert int(stats.get("cmd_get", 0)) > 0 and int(stats.get("cmd_set", 0)) > 0, out
    assert int(stats["get_misses"]) == 0, \
        f"memaslap --division={division} (get of {division} keys per command) saw misses:\n{out}"
    assert int(stats["verify_failed"]) == 0, out


# --------------------------------------------------------------------------
# 5. memcached-tool
# --------------------------------------------------------------------------

def memcached_tool():
    if not os.path.exists(MEMCACHED_TOOL):
        pytest.skip(f"{MEMCACHED_TOOL} missing (Debian package `memcached`)")
    perl = need_tool("perl", package="perl")
    return [perl, MEMCACHED_TOOL]


def fill(server, n=100, size=100):
    c = base_client(server.addr)
    kv = {f"mt-{i}": bytes([65 + i % 26]) * size for i in range(n)}
    for k, v in kv.items():
        assert c.set(k, v, expire=0)
    c.close()
    return kv


def test_memcached_tool_stats(server):
    tool = memcached_tool()
    fill(server, 100)
    r = run(tool + [server.spec, "stats"], timeout=20)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, r.stderr.decode()
    rows = dict(re.findall(r"^\s*(\w+)\s+(\S+)\s*$", out, re.M))
    assert rows.get("curr_items") == "100", out
    assert int(rows.get("cmd_set", 0)) >= 100, out
    assert "pid" in rows and "uptime" in rows, out


def test_memcached_tool_display(server):
    tool = memcached_tool()
    fill(server, 100)
    r = run(tool + [server.spec, "display"], timeout=20)
    out = r.stdout.decode(errors="replace")
    assert r.returncode == 0, r.stderr.decode()
    assert "Item_Size" in out, out
    rows = re.findall(r"^\s*(\d+)\s+\S+\s+(\d+)s\s+(\d+)\s+(\d+)\s+", out, re.M)
    count = sum(int(row[3]) for row in rows)
    assert count == 100, (
        f"memcached-tool display shows {len(rows)} slab-class rows holding {count} "
        f"items, expected 100 (it reads `stats items` items:<class>:number and "
        f"`stats slabs` <class>:total_pages/chunk_size):\n{out}")


def test_memcached_tool_dump(server):
    tool = memcached_tool()
    kv = fill(server, 100)
    try:
        r = run(tool + [server.spec, "dump"], timeout=20)
    except subprocess.TimeoutExpired:
        pytest.fail("memcached-tool dump did not finish in 20 s: it sends "
                    "`lru_crawler metadump all` and waits for lines `key=... exp=...` "
                    "closed by END")
    assert r.returncode == 0, r.stderr.decode()
    out = r.stdout
    dumped = dict(re.findall(rb"add (\S+) \d+ -?\d+ \d+\r\n([^\r]*)\r\n", out))
    dumped = {k.decode(): v for k, v in dumped.items()}
    assert dumped == kv, describe_missing(kv, dumped, "memcached-tool dump")


# --------------------------------------------------------------------------
# 6. twemproxy (nutcracker)
# --------------------------------------------------------------------------

class Nutcracker:
    """nutcracker (twemproxy) in front of backends: ketama, eject after 1 failure."""

    def __init__(self, backends, workdir):
        self.binary = need_tool("nutcracker", "/usr/sbin/nutcracker", package="nutcracker")
        self.port, stats_port = free_port(), free_port()
        conf = Path(workdir) / "nutcracker.yml"
        conf.write_text(
            "flex:\n"
            f"  listen: {HOST}:{self.port}\n"
            "  hash: fnv1a_64\n"
            "  distribution: ketama\n"
            "  timeout: 2000\n"
            "  auto_eject_hosts: true\n"
            "  server_retry_timeout: 600000\n"
            "  server_failure_limit: 1\n"
            "  servers:\n"
            + "".join(f"   - {s.spec}:1 s{i}\n" for i, s in enumerate(backends)))
        r = run([self.binary, "-t", "-c", str(conf)], timeout=10)
        assert r.returncode == 0, r.stdout.decode() + r.stderr.decode()
        self.log = Path(workdir) / "nutcracker.log"
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(conf), "-s", str(stats_port), "-a", HOST,
             "-o", str(self.log), "-p", str(Path(workdir) / "nutcracker.pid")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL)
        try:
            wait_for_port(self.port, self.proc, self.log)
        except Exception:
            self.stop()
            raise

    @property
    def addr(self):
        return (HOST, self.port)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def nutcracker(three_servers, tmp_path):
    nc = Nutcracker(three_servers, tmp_path)
    yield nc
    nc.stop()


def load_through_proxy(proxy, backends, kv):
    """Set kv through the proxy; return {key: index of the backend holding it}."""
    c = base_client(proxy.addr)
    for k, v in kv.items():
        assert c.set(k, v) is True, f"set {k} through nutcracker"
    c.close()
    owner = {}
    for i, s in enumerate(backends):  # single-key gets straight to each backend
        bc = base_client(s.addr)
        for k in kv:
            if bc.get(k) is not None:
                assert k not in owner, f"{k} on two backends"
                owner[k] = i
        bc.close()
    counts = [sum(1 for o in owner.values() if o == i) for i in range(len(backends))]
    assert len(owner) == len(kv), f"only {len(owner)} of {len(kv)} keys reached a backend"
    assert all(n > len(kv) // 10 for n in counts), f"ketama did not spread: {counts}"
    return owner, counts


def kill_and_wait_ejection(proxy, backend, probe_key):
    """Kill a backend; the first request routed to it fails and ejects it."""
    backend.kill()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        pc = base_client(proxy.addr, timeout=5)
        try:
            pc.get(probe_key)
            return
        except Exception:
            time.sleep(0.2)
        finally:
            pc.close()
    pytest.fail("nutcracker never ejected the killed backend "
                "(gets of its keys kept failing for 15 s)")


def kill_backend(proxy, servers, kv, owner, dead):
    """Kill backend `dead` and wait until the proxy ejects it; returns the keys and
    values on the live backends and the keys that were on the dead one."""
    survivors = {k: v for k, v in kv.items() if owner[k] != dead}
    orphans = [k for k in kv if owner[k] == dead]
    kill_and_wait_ejection(proxy, servers[dead], orphans[0])
    return survivors, orphans


def test_twemproxy_ketama_multiget_and_failover(three_servers, nutcracker):
    """2000 keys through nutcracker, one multiget; kill a backend; multiget again."""
    kv = keys_values("tw")
    owner, counts = load_through_proxy(nutcracker, three_servers, kv)
    c = base_client(nutcracker.addr)
    got = multiget(c.get_many, kv, "multiget through nutcracker",
                   note=f"one `get` line to the proxy, split into one `get` per "
                        f"backend of {counts} keys")
    assert got == kv, describe_missing(kv, got, "multiget through nutcracker")
    c.close()

    survivors, _ = kill_backend(nutcracker, three_servers, kv, owner, dead=1)
    pc = base_client(nutcracker.addr, timeout=10)
    got = multiget(pc.get_many, survivors, "multiget through nutcracker after a backend died",
                   note="split over the 2 live backends")
    assert got == survivors, describe_missing(
        survivors, got, "multiget through nutcracker after one backend died")
    pc.close()
    assert nutcracker.proc.poll() is None, "nutcracker died"


def test_twemproxy_failover_single_keys(three_servers, nutcracker):
    """The same failover with single-key gets only (no multiget involved)."""
    kv = keys_values("tws")
    owner, counts = load_through_proxy(nutcracker, three_servers, kv)
    c = base_client(nutcracker.addr)
    for k, v in kv.items():
        assert c.get(k) == v, f"get {k} through nutcracker"
    c.close()

    survivors, orphans = kill_backend(nutcracker, three_servers, kv, owner, dead=2)
    pc = base_client(nutcracker.addr, timeout=10)
    for k, v in survivors.items():
        assert pc.get(k) == v, f"after ejection: get {k} (its backend is alive)"
    # Keys of the dead backend are rehashed onto the live ones and writable.
    for k in orphans[:200]:
        assert pc.set(k, kv[k]) is True, f"set {k} after ejection"
        assert pc.get(k) == kv[k]
    pc.close()
    assert nutcracker.proc.poll() is None, "nutcracker died"
