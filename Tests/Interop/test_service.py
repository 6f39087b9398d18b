"""flexkvs started the way service managers start memcached: Debian's wrapper runs
`memcached -m 64 -p PORT -u memcache -l 127.0.0.1 -P PIDFILE` (others add -d). The
server must daemonize, write its pid file, run as the given user, serve, and stop
cleanly on SIGTERM, removing the pid file; -A enables `shutdown`, -F refuses flush_all.
"""

import os
import pwd
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from support import HOST, flexkvs_path, free_port


def ask(port, request, terminator=b"\r\n"):
    with socket.create_connection((HOST, port), timeout=5) as s:
        s.sendall(request)
        data = b""
        while not data.endswith(terminator):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        return data


def wait_until(predicate, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def serves(port):
    try:
        return ask(port, b"version\r\n").startswith(b"VERSION ")
    except OSError:
        return False


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def test_debian_service_invocation_daemonizes_drops_privileges_and_stops_cleanly():
    binary = flexkvs_path()
    assert binary.exists(), f"flexkvs binary not found at {binary}"
    port = free_port()
    # As memcached, the pid file is written after privileges are dropped: a directory
    # the user can write (pytest's own temporary folders are root's alone).
    folder = Path(tempfile.mkdtemp(prefix="flexkvs-service-", dir="/tmp"))
    os.chmod(folder, 0o777)
    pidfile = folder / "flexkvs.pid"
    user = "nobody" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    started = subprocess.run([str(binary), "-m", "64", "-p", str(port), "-u", user, "-l", HOST, "-P", str(pidfile), "-d"],
                             capture_output=True, timeout=30)
    assert started.returncode == 0, started.stderr.decode()
    assert wait_until(pidfile.exists), "no pid file"
    pid = int(pidfile.read_text().strip())
    try:
        assert wait_until(lambda: serves(port)), "the daemon does not serve"
        status = Path(f"/proc/{pid}/status").read_text()
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        assert uid == pwd.getpwnam(user).pw_uid, f"runs as uid {uid}, not {user}"
        assert os.getppid() != pid
        assert ask(port, b"set k 0 0 1\r\nv\r\nget k\r\n", b"END\r\n") == b"STORED\r\nVALUE k 0 1\r\nv\r\nEND\r\n"
        os.kill(pid, signal.SIGTERM)
        assert wait_until(lambda: not pid_alive(pid)), "SIGTERM did not stop it"
        assert not pidfile.exists(), "the pid file was left behind"
    finally:
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)
        folder.rmdir()


@pytest.mark.parametrize("flags", [["-A"], []])
def test_shutdown_command_needs_A(flags):
    port = free_port()
    proc = subprocess.Popen([str(flexkvs_path()), "-p", str(port), "-U", "0", "-l", HOST] + flags,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: serves(port))
        reply = ask(port, b"shutdown\r\n")
        if flags:
            assert reply == b"", reply
            assert proc.wait(timeout=10) == 0
        else:
            assert reply == b"ERROR: shutdown not enabled\r\n"
            assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait()


def test_flush_all_refused_with_F():
    port = free_port()
    proc = subprocess.Popen([str(flexkvs_path()), "-p", str(port), "-U", "0", "-l", HOST, "-F"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: serves(port))
        assert ask(port, b"flush_all\r\n") == b"CLIENT_ERROR flush_all not allowed\r\n"
        stats = ask(port, b"stats\r\n", b"END\r\n")
        assert b"STAT cmd_flush 1\r\n" in stats
    finally:
        proc.kill()
        proc.wait()


def settings(port):
    """`stats settings` as a dict."""
    reply = ask(port, b"stats settings\r\n", b"END\r\n").decode()
    return dict(line.split(" ", 2)[1:] for line in reply.split("\r\n") if line.startswith("STAT "))


@pytest.mark.parametrize("extra, file_text, warm", [
    ([], None, "yes"),
    (["--no-warm-cores"], None, "no"),
    ([], "warm_cores = false\nthreads = 2\n", "no"),
])
def test_config_file_and_flags(tmp_path, extra, file_text, warm):
    """The shipped config serves as documented (a flag on the command line wins over
    the file: -p, -U); a file of one's own sets what it names."""
    config = Path(__file__).resolve().parents[2] / "Configs" / "flexkvs.toml"
    if file_text is not None:
        config = tmp_path / "flexkvs.toml"
        config.write_text(file_text)
    port = free_port()
    argv = [str(flexkvs_path()), "--config", str(config), "-p", str(port), "-U", "0"] + extra
    if os.geteuid() == 0:
        argv += ["-u", "root"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert wait_until(lambda: serves(port)), proc.stderr.read().decode() if proc.poll() is not None else "not serving"
        s = settings(port)
        assert s["tcpport"] == str(port) and s["udpport"] == "0"
        assert s["warm_cores"] == warm
        assert s["num_threads"] == ("2" if file_text and "threads = 2" in file_text else "1")
        assert s["maxbytes"] == str(64 << 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


@pytest.mark.parametrize("file_text, message", [
    ('threads = "two"\n', "bad.toml: line 1: `threads` has a value of the wrong type"),
    ("tcp_port = 11211\nwarm_cores = 1\n", "bad.toml: line 2: `warm_cores` has a value of the wrong type"),
    ("\ncolour = 3\n", "bad.toml: line 2: unknown key(s) colour"),
    ("threads = 0\n", "-t must be 1...64"),
])
def test_config_file_errors_name_the_setting(tmp_path, file_text, message):
    config = tmp_path / "bad.toml"
    config.write_text(file_text)
    r = subprocess.run([str(flexkvs_path()), "--config", str(config), "-p", str(free_port())],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
    assert r.returncode != 0
    assert message in r.stderr.decode(), r.stderr.decode()
