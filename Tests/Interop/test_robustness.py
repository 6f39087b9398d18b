"""Hostile and careless clients against a flexkvs process: hundreds of clients that
close with replies unread, send half a request and go, or stop reading, while a
well-behaved client keeps being served. Afterwards curr_connections and the server's
resident memory are back at their baseline within a second.

    FLEXKVS=/path/to/flexkvs python3 -m pytest -q Tests/Interop/test_robustness.py
"""

import multiprocessing
import socket
import subprocess
import time

import pytest

from support import HOST, flexkvs_path, free_port
BIG = 500 * 1024


@pytest.fixture
def server():
    binary = flexkvs_path()
    assert binary.exists(), f"flexkvs binary not found at {binary} (swift build first)"
    port = free_port()
    proc = subprocess.Popen([str(binary), "-p", str(port), "-U", "0", "-l", HOST, "-t", "2", "-c", "2048", "-m", "64"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection((HOST, port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        proc.kill()
        pytest.fail("flexkvs did not start")
    yield proc, port
    proc.kill()
    proc.wait()


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def stats(sock):
    sock.sendall(b"stats\r\n")
    data = b""
    while not data.endswith(b"END\r\n"):
        chunk = sock.recv(65536)
        assert chunk, "server closed the admin connection"
        data += chunk
    return {k.decode(): v.decode() for _, k, v in (line.split(b" ", 2) for line in data.split(b"\r\n") if line.startswith(b"STAT "))}


def request(sock, line, terminator):
    sock.sendall(line)
    data = b""
    while not data.endswith(terminator):
        chunk = sock.recv(1 << 20)
        assert chunk, f"server closed the connection on {line[:30]!r}"
        data += chunk
    return data


def steady_client(port, stop, results):
    """Sets and gets in a loop until `stop`; puts (round trips in seconds, failures)."""
    latencies, failures = [], []
    try:
        with socket.create_connection((HOST, port), timeout=5) as c:
            i = 0
            while not stop.is_set():
                t0 = time.monotonic()
                assert request(c, b"set s%d 0 0 1\r\nx\r\n" % i, b"\r\n") == b"STORED\r\n"
                assert request(c, b"get s%d\r\n" % i, b"END\r\n") == b"VALUE s%d 0 1\r\nx\r\nEND\r\n" % i
                latencies.append(time.monotonic() - t0)
                i += 1
    except Exception as e:  # noqa: BLE001 - reported by the test
        failures.append(repr(e))
    results.put((latencies, failures))


def test_careless_clients_leave_nothing_behind_and_others_are_served(server):
    proc, port = server
    admin = socket.create_connection((HOST, port), timeout=5)
    assert request(admin, b"set big 0 0 %d\r\n%s\r\n" % (BIG, b"x" * BIG), b"\r\n") == b"STORED\r\n"
    # Warm up: every worker serves big replies once, so buffers that are reused are
    # allocated before the baseline is taken.
    for _ in range(8):
        with socket.create_connection((HOST, port), timeout=5) as c:
            request(c, b"get big\r\n", b"END\r\n")
    time.sleep(0.3)
    base_connections = int(stats(admin)["curr_connections"])
    base_rss = rss_kib(proc.pid)

    # A well-behaved client measures its round trips throughout, in a process of its
    # own (a thread would time this process's own pauses too).
    stop = multiprocessing.Event()
    results = multiprocessing.Queue()
    steady = multiprocessing.Process(target=steady_client, args=(port, stop, results))
    steady.start()
    time.sleep(0.2)
    careless = []
    for i in range(300):
        c = socket.socket()
        c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        c.connect((HOST, port))
        kind = i % 3
        if kind == 0:
            c.sendall(b"get big\r\n" * (1 + i % 5))  # replies unread, then closed below
        elif kind == 1:
            c.sendall(b"set half 0 0 100\r\nonly part of the val")  # a request cut short
        else:
            c.sendall(b"get big\r\n" * 20)  # stops reading, stays open for a while
        careless.append(c)
        if len(careless) % 50 == 0:
            time.sleep(0.05)
    time.sleep(0.5)
    during = int(stats(admin)["curr_connections"])
    for c in careless:
        c.close()
    time.sleep(0.2)
    stop.set()
    latencies, failures = results.get(timeout=15)
    steady.join(timeout=10)
    assert not failures, failures
    assert latencies, "the steady client was never served"
    latencies.sort()
    summary = "round trips: %d, p50 %.3f s, p99 %.3f s, max %.3f s" % (
        len(latencies), latencies[len(latencies) // 2], latencies[len(latencies) * 99 // 100], latencies[-1])
    print(summary)
    assert latencies[len(latencies) * 99 // 100] < 0.5, summary
    assert during >= base_connections + 300, f"curr_connections {during} while 300 careless clients were open"

    # Within a second everything is back at its baseline.
    deadline = time.monotonic() + 1.0
    connections, rss = None, None
    while time.monotonic() < deadline:
        connections = int(stats(admin)["curr_connections"])
        rss = rss_kib(proc.pid)
        if connections == base_connections and rss <= base_rss + 16 * 1024:
            break
        time.sleep(0.05)
    assert connections == base_connections, f"curr_connections {connections}, baseline {base_connections}"
    assert rss <= base_rss + 16 * 1024, f"RSS {rss} KiB, baseline {base_rss} KiB"
    # And the server still answers the admin.
    assert request(admin, b"get big\r\n", b"END\r\n").startswith(b"VALUE big 0 %d\r\n" % BIG)
