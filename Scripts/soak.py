#!/usr/bin/env python3
"""Soak test: a server under mixed load with faults injected, sampled every second.

    python3 Scripts/soak.py kvs MINUTES [--binary .build/release/flexkvs]

kvs: flexkvs (TCP and UDP, 2 threads) under 6 client processes that each own keys and
check every read against what they last wrote (a mismatch or a miss is data loss: the
working set fits memory, so nothing may be evicted), while every 3 s one client is killed
with SIGKILL mid-request and replaced, and every second garbage arrives over TCP (lines,
endless lines, binary junk) and UDP (corrupt frame headers). Each second the script
samples the server's RSS, open descriptors, curr_connections, total_items, evictions and
the clients' operation and loss counts; at the end it prints each curve's start, peak and
end, and fails if anything was lost, an operation failed, or RSS or descriptors grew
without bound (the last third's peak more than 10 % (RSS) or 8 descriptors above the
first third's).

storm: a 3-node flexstorm cluster (one process per node, in network namespaces made by
Scripts/storm-netns.sh, the design given by --mode), spouts on a and c paced at 1,000
tuples/s each feeding counters on b and c, which feed the rankers on a. Every 20 s b or c
(in turn) is killed with SIGKILL and started again 1.5 s later; every second garbage
datagrams reach b and c's DCCP port. Each second the script samples every node's RSS and
descriptors and its tuples processed (from its status lines). It fails if a restarted
node processes nothing in its first 3 s (it did not rejoin), if a (never killed) stops
making progress, if a's RSS or descriptors grow without bound (the kvs rule), or if a's
report shows drops other than those a down peer explains (destination_down,
lost_in_flight).
"""
import argparse
import multiprocessing
import os
import random
import signal
import socket
import subprocess
import sys
import time

HOST = "127.0.0.1"


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def rss_kib(pid):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def recv_until(sock, terminator):
    data = b""
    while not data.endswith(terminator):
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise ConnectionError("closed")
        data += chunk
    return data


def stats(sock):
    sock.sendall(b"stats\r\n")
    data = recv_until(sock, b"END\r\n")
    return {k.decode(): v.decode() for _, k, v in (l.split(b" ", 2) for l in data.split(b"\r\n") if l.startswith(b"STAT "))}


def client(index, slot, port, counters):
    """Owns keys c<slot>-0..199 (a replacement takes over its predecessor's slot, so the
    data set stays the same size and no two live clients share keys); writes random
    values and checks every read of a key it wrote itself."""
    rng = random.Random(index * 7919 + int(time.time()))
    last = {}
    ops = lost = 0
    sock = socket.create_connection((HOST, port), timeout=10)
    while True:
        k = rng.randrange(200)
        key = b"c%d-%d" % (slot, k)
        if rng.random() < 0.4 or k not in last:
            value = b"%d" % rng.getrandbits(48) * rng.randint(1, 40)
            sock.sendall(b"set %s 0 0 %d\r\n%s\r\n" % (key, len(value), value))
            if recv_until(sock, b"\r\n") != b"STORED\r\n":
                lost += 1
            last[k] = value
        else:
            sock.sendall(b"get %s\r\n" % key)
            reply = recv_until(sock, b"END\r\n")
            expected = b"VALUE %s 0 %d\r\n%s\r\nEND\r\n" % (key, len(last[k]), last[k])
            if reply != expected:
                lost += 1
        ops += 1
        if ops % 200 == 0:
            counters[index] = (ops, lost)


def garbage(port, udp_port, rng):
    kind = rng.randrange(4)
    try:
        if kind == 3:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                for _ in range(20):
                    u.sendto(bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64))), (HOST, udp_port))
            return
        with socket.create_connection((HOST, port), timeout=2) as c:
            if kind == 0:
                c.sendall(b"".join(b"bogus %d\r\n" % i for i in range(200)))
            elif kind == 1:
                c.sendall(b"x" * 200_000)
            else:
                c.sendall(b"\x80" + bytes(rng.getrandbits(8) for _ in range(5000)))
            c.settimeout(0.2)
            try:
                while c.recv(65536):
                    pass
            except OSError:
                pass
    except OSError:
        pass


def soak_kvs(minutes, binary):
    port, udp_port = free_port(), free_port()
    server = subprocess.Popen([binary, "-p", str(port), "-U", str(udp_port), "-l", HOST, "-t", "2", "-m", "64", "-c", "1024"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            admin = socket.create_connection((HOST, port), timeout=5)
            break
        except OSError:
            if time.monotonic() > deadline:
                server.kill()
                sys.exit("soak: flexkvs did not start")
            time.sleep(0.05)
    manager = multiprocessing.Manager()
    counters = manager.dict()
    clients = {}
    slots = {}
    for i in range(6):
        slots[i] = i
        clients[i] = multiprocessing.Process(target=client, args=(i, i, port, counters), daemon=True)
        clients[i].start()
    rng = random.Random(1)
    samples = []
    killed = 0
    next_index = 6
    start = time.monotonic()
    end = start + minutes * 60
    last_kill = start
    try:
        while time.monotonic() < end:
            t = time.monotonic()
            if server.poll() is not None:
                sys.exit(f"soak: flexkvs exited ({server.returncode})")
            if t - last_kill >= 3:
                victim = rng.choice(list(clients))
                os.kill(clients[victim].pid, signal.SIGKILL)
                clients[victim].join()
                del clients[victim]  # its counts stay (indices are never reused)
                slots[next_index] = slots.pop(victim)
                clients[next_index] = multiprocessing.Process(target=client, args=(next_index, slots[next_index], port, counters),
                                                              daemon=True)
                clients[next_index].start()
                next_index += 1
                killed += 1
                last_kill = t
            garbage(port, udp_port, rng)
            s = stats(admin)
            ops = sum(v[0] for v in counters.values())
            lost = sum(v[1] for v in counters.values())
            samples.append(dict(t=round(t - start), rss=rss_kib(server.pid), fds=fds(server.pid),
                                conns=int(s["curr_connections"]), items=int(s["curr_items"]),
                                evictions=int(s["evictions"]), ops=ops, lost=lost))
            if len(samples) % 30 == 0:
                x = samples[-1]
                print(f"soak kvs {x['t']} s: rss {x['rss']} KiB, fds {x['fds']}, conns {x['conns']}, items {x['items']}, "
                      f"ops {x['ops']}, lost {x['lost']}, clients killed {killed}", flush=True)
            time.sleep(max(0, 1 - (time.monotonic() - t)))
    finally:
        for p in clients.values():
            p.kill()
        server.terminate()
        server.wait(timeout=10)
    return report("kvs", samples, killed)


def soak_storm(minutes, binary, mode):
    import re
    import threading
    prefix = "flexsoak"
    env = dict(os.environ, FLEXSTORM_NETNS_PREFIX=prefix)
    subprocess.run(["bash", "Scripts/storm-netns.sh", "up"], check=True, env=env, stdout=subprocess.DEVNULL)
    config = f"/tmp/{prefix}-{os.getpid()}.toml"
    nodes = "\n".join(f'[[node]]\nname = "{n}"\naddress = "198.18.1.{i + 1}"\nport = 7100' for i, n in enumerate("abc"))
    workers = "\n".join(f'[[worker]]\nkind = "{k}"\nnode = "{n}"' for k, n in
                        [("spout", "a"), ("spout", "c"), ("counter", "b"), ("counter", "c"), ("ranker", "a"), ("total", "a")])
    with open(config, "w") as f:
        f.write(f"[topology]\nemit_interval_ms = 1000\npeer_down_ms = 500\nspout_rate = 1000\n{nodes}\n{workers}\n")
    seconds = int(minutes * 60)
    tuples = str(int(2 * 1000 * (seconds + 60)))
    status = re.compile(r"node (\w): (\d+) tuples/s, (\d+) processed")
    progress = {}
    lock = threading.Lock()

    def start(name, duration):
        p = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-{name}", binary, "node", "--config", config, "--node", name,
                              "--generate", tuples, "--users", "2000", "--mode", mode, "--duration", str(duration)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        p.lines = []
        p.started = time.monotonic()

        def read():
            for line in p.stderr:
                p.lines.append(line.rstrip())
                m = status.search(line)
                if m:
                    with lock:
                        progress[(name, p.pid)] = progress.get((name, p.pid), []) + [int(m.group(2))]
        threading.Thread(target=read, daemon=True).start()
        return p

    junk = subprocess.Popen(["ip", "netns", "exec", f"{prefix}-a", sys.executable, "-c", (
        "import os, socket, time\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "while True:\n"
        "    for host in ('198.18.1.2', '198.18.1.3'):\n"
        "        for n in (1, 13, 40, 200):\n"
        "            s.sendto(os.urandom(n), (host, 7100))\n"
        "    time.sleep(1)\n")])
    procs = {n: start(n, seconds + 30) for n in "abc"}
    samples, restarts, failures = [], [], []
    t0 = time.monotonic()
    next_kill, victim = t0 + 20, "b"
    try:
        while time.monotonic() < t0 + seconds:
            t = time.monotonic()
            if t >= next_kill:
                old = procs[victim]
                old.kill()
                old.wait()
                time.sleep(1.5)
                procs[victim] = start(victim, int(t0 + seconds - time.monotonic()) + 30)
                restarts.append((victim, procs[victim]))
                victim = "c" if victim == "b" else "b"
                next_kill = time.monotonic() + 20
            a = procs["a"]
            if a.poll() is not None:
                failures.append(f"node a exited ({a.returncode})")
                break
            with lock:
                done = sum(progress.get(("a", a.pid), []))
            samples.append(dict(t=round(t - t0), rss=rss_kib(a.pid), fds=fds(a.pid), ops=done,
                                rss_b=rss_kib(procs["b"].pid) if procs["b"].poll() is None else 0,
                                rss_c=rss_kib(procs["c"].pid) if procs["c"].poll() is None else 0))
            if len(samples) % 30 == 0:
                x = samples[-1]
                print(f"soak storm {x['t']} s: a rss {x['rss']} KiB, fds {x['fds']}, processed {x['ops']}; "
                      f"b rss {x['rss_b']} KiB, c rss {x['rss_c']} KiB; restarts {len(restarts)}", flush=True)
            time.sleep(max(0, 1 - (time.monotonic() - t)))
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGINT)
        for p in procs.values():
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
        junk.kill()
        time.sleep(0.5)
        subprocess.run(["bash", "Scripts/storm-netns.sh", "down"], env=env, stdout=subprocess.DEVNULL)
        os.unlink(config)
    for name, p in restarts:
        with lock:
            first = progress.get((name, p.pid), [])[:3]
        if sum(first) == 0:
            failures.append(f"node {name} (pid {p.pid}) processed nothing in its first 3 s: it did not rejoin")
    report_a = "\n".join(procs["a"].lines)
    drops = re.search(r"drops: (.*)", report_a)
    if drops:
        print(f"soak storm: node a {drops.group(0)}")
        for name, value in re.findall(r"(\w+) (\d+)", drops.group(1)):
            if int(value) > 0 and name not in ("destination_down", "lost_in_flight"):
                failures.append(f"node a dropped {value} tuples as {name}")
    else:
        failures.append("node a printed no report")
    # Every restarted node (b and c both feed the rankers on a) started its connection
    # to a over: a counts one start-over per restart, at least.
    reconnected = re.search(r"reconnected (\d+)", report_a)
    if not reconnected or int(reconnected.group(1)) < len(restarts):
        failures.append(f"node a saw {reconnected.group(1) if reconnected else 0} connections start over for {len(restarts)} restarts")
    for name in "bc":
        r = re.search(r"receive: (.*)", "\n".join(procs[name].lines))
        if r:
            print(f"soak storm: node {name} (last start) receive: {r.group(1)}")
    for key in ("rss_b", "rss_c"):
        values = [s[key] for s in samples if s[key] > 0]
        if values:
            print(f"  {key:9} start {values[0]:>10}  peak {max(values):>10}  end {values[-1]:>10}")
    ok = report(f"storm ({mode})", samples, len(restarts))
    for f in failures:
        print(f"soak storm: FAIL: {f}")
    return ok and not failures


def report(name, samples, killed):
    failures = []
    print(f"soak {name}: {len(samples)} samples, {killed} {'nodes restarted' if name.startswith('storm') else 'clients killed'}")
    for key in (k for k in ("rss", "fds", "conns", "items", "evictions", "ops", "lost") if k in samples[0]):
        values = [s[key] for s in samples]
        print(f"  {key:9} start {values[0]:>10}  peak {max(values):>10}  end {values[-1]:>10}")
    third = max(1, len(samples) // 3)
    first, last = samples[:third], samples[-third:]
    if samples[-1].get("lost", 0) > 0:
        failures.append(f"{samples[-1]['lost']} reads or writes lost")
    if samples[-1].get("evictions", 0) > 0:
        failures.append(f"{samples[-1]['evictions']} evictions with a working set that fits")
    if max(s["rss"] for s in last) > 1.10 * max(s["rss"] for s in first) + 4096:
        failures.append("RSS keeps growing")
    if max(s["fds"] for s in last) > max(s["fds"] for s in first) + 8:
        failures.append("descriptors keep growing")
    if samples[-1]["ops"] <= samples[third]["ops"]:
        failures.append("no progress")
    for f in failures:
        print(f"soak {name}: FAIL: {f}")
    return not failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("server", choices=["kvs", "storm"])
    parser.add_argument("minutes", type=float)
    parser.add_argument("--binary", help="the server binary (default: .build/release/flexkvs or flexstorm)")
    parser.add_argument("--mode", choices=["demux", "steered"], default="steered", help="flexstorm's node design")
    args = parser.parse_args()
    if args.server == "kvs":
        ok = soak_kvs(args.minutes, args.binary or ".build/release/flexkvs")
    else:
        ok = soak_storm(args.minutes, args.binary or ".build/release/flexstorm", args.mode)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
