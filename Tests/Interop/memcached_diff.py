#!/usr/bin/env python3
"""Randomized, seeded, byte-for-byte differential test: memcached vs flexkvs.

    python3 Tests/Interop/memcached_diff.py --flexkvs .build/release/flexkvs \
        --memcached /usr/bin/memcached --seed 1 --ops 30000 --report /tmp/diff.txt

Both servers are started here on free ephemeral ports with identical settings
(-m 64 -I 1m -t 1 -c 1024 -p P -U P -l 127.0.0.1; `-u root` is added for a
binary whose --help lists -u when we run as root, so memcached can be diffed
against itself as a harness self-check: `--flexkvs /usr/bin/memcached` must
report 0 differences). A binary whose help lists `no_lru_maintainer` (i.e.
memcached) also gets `-o no_lru_crawler,no_lru_maintainer`: memcached's
background LRU threads take transient item references, and incr/decr only
rewrite a value in place (padding a shorter result with spaces, "100" decr 1
-> "99 ") when nobody else holds the item, so without this memcached is not
even deterministic against itself; the protocol behaviour is unchanged.
One generated operation stream (random.Random(seed)) is
run in lockstep against both; each op is sent to both servers concurrently and
both replies are read concurrently, so time-based values on the two servers
differ by milliseconds only. Servers are killed at exit.

Framing, without sleeps:
  text/meta  every request (or small pipeline) is followed by `mn\\r\\n`; we
             read until the reply ends with the expected number of `MN\\r\\n`
             lines (generated values never contain an upper-case `N`, so no
             value can fake the marker).
  binary     every request is followed by a NOOP with a unique opaque; we read
             until that NOOP's response has been parsed.
  udp        one datagram per op: 8-byte frame header (request id, seq 0,
             total 1, reserved 0) + command + `mn\\r\\n`; the reply datagrams
             with our request id are reassembled (by sequence number within
             each reply's run of datagrams) until the payload ends with MN.
  udpbin     binary over UDP (not in the default --protocols; not with udp:
             after a binary request over UDP that it answers "Invalid arguments",
             memcached 1.6.18 runs only the first command of every later text
             datagram, so udp's `mn` is never answered), one datagram
             per op, most a lone request (no sentinel: that would make it two),
             reassembled as for udp until the last request's response has arrived.
  A connection closed by the server is recorded as the bytes received plus
  `<CLOSED>`; no progress for 1 s (0.3 s for UDP) as `<TIMEOUT>`; either way
  the next op reconnects. The per-op transcript (request, reply, marker) of
  each server is compared after normalisation.

Normalised (and why), everything else is compared byte for byte:
  * CAS unique values: text `gets`/`gats` VALUE lines, meta `c` return flag,
    `me` cas=, binary header cas of responses. Each server numbers CAS its own
    way; the two numberings must be a consistent bijection (memcached's value
    X always pairs with the same flexkvs value Y, i.e. both map to the same id
    in order of first appearance). Binary cas 0 is kept literally. Requests
    that must carry a server's real CAS (cas, ms C, md C, ma C, binary cas)
    carry the last CAS that server returned for the key, so the request bytes
    differ in that field only (the report shows memcached's).
  * Remaining-TTL / last-access numbers that tick with the clock (meta `t`,
    `l` return flags, `me` exp=/la=): compared with a tolerance of 2 s.
  * `me` (a debug command): only key, exp, la, cas and fetch are compared;
    cls/size/other fields are memcached-internal slab details.
  * `stats ...` replies: STAT lines are dropped (only the framing/END/errors
    are compared); instead a separate check requires every `STAT name`
    memcached prints for `stats` and `stats settings` to be printed by flexkvs
    (missing names are reported and fail the run). Binary STAT replies are
    reduced to their statuses and whether the empty terminator arrives.
  * `version` text and binary VERSION bodies (the versions differ).
  * pid/uptime/time only occur in stats, which are handled above.
Excluded because they cannot be made deterministic: delayed `flush_all N` and
`flush_all noreply` (timing), exptimes that expire during a run (only 0,
far-future, already-expired and negative exptimes are used), meta `R`
(recache window) and TCP lines between 2 KB and 16 KB that are not `get`s
(memcached's line-too-long check depends on how a read is split).

After a difference the keys the op touched are deleted on both servers (binary
DELETEQ; disable with --no-resync) so one divergence does not cascade into
later ops.
--max-diffs N stops the run after N differences (0: no limit). --log FILE
writes every op with both replies (to follow a key's history). The summary
groups differences by op shape (command + edge case) with the most common
(memcached reply, flexkvs reply) pairs, digits masked as #.
Exit status: 0 no differences, 1 differences (incl. missing stat names),
2 harness/server failure.
"""

import argparse
import atexit
import base64
import collections
import os
import random
import re
import selectors
import signal
import socket
import struct
import subprocess
import sys
import time

TCP_IDLE = 1.0
UDP_IDLE = 0.3
BAD_CAS = 987654321987          # never handed out by either server's counter
MN = b"MN\r\n"

# ----------------------------------------------------------------------------
# servers

_procs = []


def _kill_all():
    for p in _procs:
        if p.poll() is None:
            try:
                p.terminate()
            except OSError:
                pass
    deadline = time.monotonic() + 3
    for p in _procs:
        try:
            p.wait(max(0.05, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


atexit.register(_kill_all)


def _sig(signum, frame):
    _kill_all()
    sys.exit(128 + signum)


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1."""
    for _ in range(200):
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        t.bind(("127.0.0.1", 0))
        port = t.getsockname()[1]
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            u.bind(("127.0.0.1", port))
        except OSError:
            t.close()
            u.close()
            continue
        t.close()
        u.close()
        return port
    raise RuntimeError("no free port")


def help_of(path):
    try:
        return subprocess.run([path, "-h"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return b""


class Target:
    """One server under test plus its client connections and CAS memory."""

    def __init__(self, name, path, extra_args=()):
        self.name = name
        self.path = path
        self.port = free_port()
        args = [path, "-p", str(self.port), "-U", str(self.port), "-l", "127.0.0.1",
                "-m", "64", "-I", "1m", "-t", "1", "-c", "1024"] + list(extra_args)
        help_text = help_of(path)
        if os.geteuid() == 0 and re.search(rb"(^|\s)-u[,\s]", help_text):
            args += ["-u", "root"]
        if b"no_lru_maintainer" in help_text:
            args += ["-o", "no_lru_crawler,no_lru_maintainer"]
        self.args = args
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _procs.append(self.proc)
        self.conns = {}
        self.udp = None
        self.last_cas = {}
        self.timeouts = 0
        self.closes = 0
        self.stale_udp = 0
        self.timeout_shapes = collections.Counter()
        self.wait_ready()

    def wait_ready(self):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s at start: %s" % (self.name, self.proc.returncode,
                                                                      " ".join(self.args)))
            try:
                s = socket.create_connection(("127.0.0.1", self.port), timeout=0.5)
                s.close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("%s did not start listening" % self.name)

    def alive(self):
        return self.proc.poll() is None

    def conn(self, proto):
        s = self.conns.get(proto)
        if s is None:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            self.conns[proto] = s
        return s

    def drop(self, proto):
        s = self.conns.pop(proto, None)
        if s is not None:
            try:
                s.close()
            except OSError:
                pass

    def udp_sock(self):
        if self.udp is None:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            u.connect(("127.0.0.1", self.port))
            u.setblocking(False)
            self.udp = u
        return self.udp


# ----------------------------------------------------------------------------
# requests

class CasRef:
    """A CAS operand: the last CAS this server returned for `key`."""
    __slots__ = ("key", "binary")

    def __init__(self, key, binary=False):
        self.key = key
        self.binary = binary

    def resolve(self, target):
        v = target.last_cas.get(self.key, BAD_CAS)
        return struct.pack(">Q", v) if self.binary else b"%d" % v


class Step:
    __slots__ = ("proto", "parts", "mn", "key", "stats", "opaque_keys", "udp_hdr", "sentinel", "last_opaque")

    def __init__(self, proto, parts, mn=0, key=None, stats=False, opaque_keys=None, udp_hdr=None):
        self.proto = proto          # text | meta | binary | udp | udpbin
        self.parts = parts          # bytes / CasRef
        self.mn = mn                # `mn` commands inside the request (text/meta/udp)
        self.key = key              # key for CAS tracking (meta)
        self.stats = stats
        self.opaque_keys = opaque_keys or {}
        self.udp_hdr = udp_hdr      # (seq, total) override
        self.last_opaque = None     # udpbin: the opaque of the datagram's last request, whose reply ends it

    def build(self, target):
        return b"".join(p.resolve(target) if isinstance(p, CasRef) else p for p in self.parts)


class Op:
    __slots__ = ("shape", "proto", "steps")

    def __init__(self, shape, proto, steps):
        self.shape = shape
        self.proto = proto
        self.steps = steps


# ----------------------------------------------------------------------------
# concurrent exchange

def count_mn(buf):
    return buf.count(b"\nMN\r\n") + (1 if buf.startswith(MN) else 0)


class TcpJob:
    def __init__(self, target, proto, out, done):
        self.target = target
        self.proto = proto
        self.out = memoryview(out)
        self.done = done
        self.buf = bytearray()
        self.sent = 0
        self.status = None
        self.idle = TCP_IDLE
        self.parse_off = 0

    def start(self, sel, now):
        self.last = now
        try:
            self.sock = self.target.conn(self.proto)
        except OSError:
            self.status = "closed"
            return
        sel.register(self.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, self)

    def finish(self, status, sel):
        self.status = status
        try:
            sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass

    def handle(self, mask, sel, now):
        if mask & selectors.EVENT_WRITE and self.sent < len(self.out):
            try:
                n = self.sock.send(self.out[self.sent:self.sent + (1 << 20)])
            except BlockingIOError:
                n = 0
            except OSError:
                n = 0
                self.sent = len(self.out)      # peer gone: stop writing, read what is left
            self.sent += n
            if n:
                self.last = now
            if self.sent >= len(self.out):
                sel.modify(self.sock, selectors.EVENT_READ, self)
        if mask & selectors.EVENT_READ:
            try:
                data = self.sock.recv(1 << 20)
            except BlockingIOError:
                return
            except OSError:
                data = b""
            if not data:
                self.finish("closed", sel)
                return
            self.buf += data
            self.last = now
            if self.done(self):
                self.finish("ok", sel)


class UdpJob:
    def __init__(self, target, out, reqid, mn):
        self.target = target
        self.out = out
        self.reqid = reqid
        self.mn = mn
        self.dgrams = []
        self.status = None
        self.idle = UDP_IDLE
        self.buf = b""

    def start(self, sel, now):
        self.last = now
        self.sock = self.target.udp_sock()
        try:
            self.sock.send(self.out)
        except OSError:
            pass
        sel.register(self.sock, selectors.EVENT_READ, self)

    def finish(self, status, sel):
        self.status = status
        try:
            sel.unregister(self.sock)
        except (KeyError, ValueError):
            pass
        self.buf = self.assemble()

    def assemble(self):
        """Payload of our datagrams: runs starting at seq 0, ordered by seq."""
        out = []
        run = []
        notes = []

        def flush_run():
            if not run:
                return
            total = run[0][1]
            seqs = sorted(run)
            if [s for s, _, _ in seqs] != list(range(len(seqs))) or any(t != total for _, t, _ in seqs) \
                    or len(seqs) != total:
                notes.append(b"<UDP-FRAMING %r>" % ([(s, t) for s, t, _ in run],))
            out.extend(p for _, _, p in seqs)

        for rid, seq, total, payload in self.dgrams:
            if total == 0 and not payload:
                continue            # memcached sends empty (seq 0, total 0) datagrams for empty responses
            if seq == 0 and run:
                flush_run()
                run = []
            run.append((seq, total, payload))
        flush_run()
        return b"".join(out) + b"".join(notes)

    def handle(self, mask, sel, now):
        while True:
            try:
                d = self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:
                break
            if len(d) < 8:
                self.dgrams.append((None, 0, 1, b"<SHORT-DATAGRAM %r>" % d))
                continue
            rid, seq, total, _res = struct.unpack(">HHHH", d[:8])
            if rid != self.reqid:
                if rid in self.target.old_reqids:
                    self.target.stale_udp += 1
                    continue
                self.dgrams.append((rid, 0, 1, b"<BAD-REQID %d>" % rid))
                continue
            self.last = now
            self.dgrams.append((rid, seq, total, d[8:]))
        if self.complete():
            self.finish("ok", sel)

    def complete(self):
        payload = b"".join(p for _, _, _, p in self.dgrams)
        return payload.endswith(MN) and count_mn(payload) >= self.mn + 1


class UdpBinJob(UdpJob):
    """Binary requests in one datagram (no NOOP sentinel, which would put a second
    request in it): done once the whole response to the last request (its opaque
    `last_opaque`; it must not be quiet) has arrived."""

    def __init__(self, target, out, reqid, last_opaque):
        super().__init__(target, out, reqid, 0)
        self.last_opaque = last_opaque

    def complete(self):
        payload = self.assemble()
        off = 0
        while len(payload) - off >= 24 and payload[off] == 0x81:
            body, opaque = struct.unpack_from(">II", payload, off + 8)
            if len(payload) - off < 24 + body:
                break
            off += 24 + body
            if opaque == self.last_opaque:
                return True
        return False


def run_jobs(jobs):
    sel = selectors.DefaultSelector()
    now = time.monotonic()
    pending = []
    for j in jobs:
        j.start(sel, now)
        if j.status is None:
            pending.append(j)
    while pending:
        now = time.monotonic()
        for j in pending:
            if now - j.last >= j.idle:
                j.finish("timeout", sel)
        pending = [j for j in pending if j.status is None]
        if not pending:
            break
        wait = min(j.last + j.idle for j in pending) - now
        for key, mask in sel.select(max(wait, 0.0)):
            j = key.data
            if j.status is None:
                j.handle(mask, sel, time.monotonic())
        pending = [j for j in pending if j.status is None]
    sel.close()


def text_done(mn_expected):
    def done(job):
        b = job.buf
        return b.endswith(MN) and count_mn(b) >= mn_expected
    return done


def binary_done(sentinel_opaque):
    def done(job):
        b = job.buf
        off = job.parse_off
        while len(b) - off >= 24:
            if b[off] != 0x81:
                job.parse_off = off
                return False            # unparseable: wait for close/timeout
            blen = struct.unpack_from(">I", b, off + 8)[0]
            if len(b) - off < 24 + blen:
                break
            opcode = b[off + 1]
            opaque = struct.unpack_from(">I", b, off + 12)[0]
            off += 24 + blen
            if opcode == 0x0A and opaque == sentinel_opaque:
                job.parse_off = off
                return True
        job.parse_off = off
        return False
    return done


def bin_packet(opcode, key=b"", extras=b"", value=b"", opaque=0, cas=0, extlen=None,
               keylen=None, bodylen=None, magic=0x80, datatype=0, vbucket=0):
    kl = len(key) if keylen is None else keylen
    el = len(extras) if extlen is None else extlen
    bl = len(extras) + len(key) + len(value) if bodylen is None else bodylen
    hdr = struct.pack(">BBHBBHII", magic, opcode, kl, el, datatype, vbucket, bl, opaque)
    body = extras + key + value
    if isinstance(cas, CasRef):
        return [hdr, cas, body]
    return [hdr + struct.pack(">Q", cas) + body]


# ----------------------------------------------------------------------------
# normalisation

class Norm:
    """Canonical form of one server's transcript plus its volatile parts."""

    def __init__(self):
        self.out = []
        self.cas = []
        self.fuzzy = []

    def casv(self, v):
        self.cas.append(v)
        return b"<CAS>"

    def fuzz(self, v):
        self.fuzzy.append(v)
        return b"<~T>"


META_CODES = (b"VA", b"HD", b"EN", b"NF", b"NS", b"EX")


def norm_meta_tokens(toks, n):
    res = []
    for t in toks:
        if len(t) > 1 and t[1:].isdigit():
            if t[:1] == b"c":
                t = b"c" + n.casv(int(t[1:]))
            elif t[:1] in (b"t", b"l"):
                t = t[:1] + n.fuzz(int(t[1:]))
        res.append(t)
    return res


def norm_text(buf, n, stats=False):
    """Normalise a text/meta reply stream (values are skipped by length)."""
    b = bytes(buf)
    out = []
    i = 0
    L = len(b)
    while i < L:
        j = b.find(b"\r\n", i)
        if j < 0:
            out.append(b[i:])
            break
        line = b[i:j]
        nxt = j + 2
        if line.startswith(b"VALUE "):
            toks = line.split(b" ")
            if len(toks) in (4, 5) and toks[3].isdigit():
                size = int(toks[3])
                if len(toks) == 5 and toks[4].isdigit():
                    toks[4] = n.casv(int(toks[4]))
                end = nxt + size + 2
                out.append(b" ".join(toks) + b"\r\n" + b[nxt:end])
                i = end
                continue
        elif line[:2] in META_CODES and (len(line) == 2 or line[2:3] == b" "):
            toks = line.split(b" ")
            if toks[0] == b"VA" and len(toks) > 1 and toks[1].isdigit():
                size = int(toks[1])
                toks = toks[:2] + norm_meta_tokens(toks[2:], n)
                end = nxt + size + 2
                out.append(b" ".join(toks) + b"\r\n" + b[nxt:end])
                i = end
                continue
            line = b" ".join(toks[:1] + norm_meta_tokens(toks[1:], n))
        elif line.startswith(b"ME "):
            toks = line.split(b" ")
            keep = toks[:2]
            for t in toks[2:]:
                k, _, v = t.partition(b"=")
                if k in (b"exp", b"la") and v.lstrip(b"-").isdigit():
                    keep.append(k + b"=" + (v if v == b"-1" else n.fuzz(int(v))))
                elif k == b"cas" and v.isdigit():
                    keep.append(b"cas=" + n.casv(int(v)))
                elif k == b"fetch":
                    keep.append(t)
            line = b" ".join(keep)
        elif line.startswith(b"VERSION "):
            line = b"VERSION <v>"
        elif stats and line.startswith(b"STAT "):
            i = nxt
            continue
        out.append(line + b"\r\n")
        i = nxt
    n.out.append(b"".join(out))


BIN_OPS = {0x00: "GET", 0x01: "SET", 0x02: "ADD", 0x03: "REPLACE", 0x04: "DELETE", 0x05: "INCR",
           0x06: "DECR", 0x07: "QUIT", 0x08: "FLUSH", 0x09: "GETQ", 0x0A: "NOOP", 0x0B: "VERSION",
           0x0C: "GETK", 0x0D: "GETKQ", 0x0E: "APPEND", 0x0F: "PREPEND", 0x10: "STAT", 0x11: "SETQ",
           0x12: "ADDQ", 0x13: "REPLACEQ", 0x14: "DELETEQ", 0x15: "INCRQ", 0x16: "DECRQ",
           0x17: "QUITQ", 0x18: "FLUSHQ", 0x19: "APPENDQ", 0x1A: "PREPENDQ", 0x1C: "TOUCH",
           0x1D: "GAT", 0x1E: "GATQ", 0x23: "GATK", 0x24: "GATKQ"}


def norm_binary(buf, n):
    b = bytes(buf)
    off = 0
    out = []
    stat_run = None

    def end_stats():
        nonlocal stat_run
        if stat_run is not None:
            sts, term = stat_run
            out.append(b"[STAT* status=%s terminated=%d]" % (b",".join(b"%04x" % s for s in sorted(sts)), term))
            stat_run = None

    while len(b) - off >= 24:
        magic, opcode, kl, el, dt, status, bl, opaque, cas = struct.unpack_from(">BBHBBHIIQ", b, off)
        if magic != 0x81 or len(b) - off < 24 + bl:
            break
        body = b[off + 24:off + 24 + bl]
        off += 24 + bl
        if opcode == 0x10:
            if stat_run is None:
                stat_run = (set(), 0)
            sts, term = stat_run
            sts.add(status)
            stat_run = (sts, 1 if (kl == 0 and bl == 0) else 0)
            continue
        end_stats()
        casb = b"0" if cas == 0 else n.casv(cas)
        if opcode == 0x0B and status == 0:
            body = b"<version>"
            bl = -1
        name = BIN_OPS.get(opcode, "op%02x" % opcode).encode()
        out.append(b"[%s st=%04x kl=%d el=%d dt=%d bl=%d op=%d cas=%s ext=%s key=%r val=%r]" % (
            name, status, kl, el, dt, bl, opaque, casb, body[:el].hex().encode(),
            body[el:el + kl], body[el + kl:]))
    end_stats()
    if off < len(b):
        out.append(b"<RAW %r>" % b[off:])
    n.out.append(b"\n".join(out))


def fmt_cmp_ok(na, nb, bij):
    """Compare two normalised transcripts; on success commit CAS pairs."""
    if na.out != nb.out or len(na.cas) != len(nb.cas) or len(na.fuzzy) != len(nb.fuzzy):
        return False
    for x, y in zip(na.fuzzy, nb.fuzzy):
        if abs(x - y) > 2:
            return False
    fwd, back = bij
    pend_f, pend_b = {}, {}
    for x, y in zip(na.cas, nb.cas):
        fx = fwd.get(x, pend_f.get(x))
        by = back.get(y, pend_b.get(y))
        if fx is not None and fx != y:
            return False
        if by is not None and by != x:
            return False
        pend_f[x] = y
        pend_b[y] = x
    fwd.update(pend_f)
    back.update(pend_b)
    return True


# ----------------------------------------------------------------------------
# CAS tracking (which CAS to send next)

VALUE_RE = re.compile(rb"VALUE (\S+) \d+ \d+ (\d+)\r\n")
META_CAS_RE = re.compile(rb"(?:^|\n)(?:VA \d+|HD|EN|NF|NS|EX)[^\r\n]* c(\d+)")
ME_CAS_RE = re.compile(rb"ME \S+ [^\r\n]*cas=(\d+)")


def track_cas(target, step, buf):
    if step.proto in ("text", "udp"):
        for m in VALUE_RE.finditer(buf):
            target.last_cas[m.group(1)] = int(m.group(2))
    elif step.proto == "meta":
        if step.key is not None:
            for m in META_CAS_RE.finditer(buf):
                target.last_cas[step.key] = int(m.group(1))
            for m in ME_CAS_RE.finditer(buf):
                target.last_cas[step.key] = int(m.group(1))
    elif step.proto in ("binary", "udpbin"):
        b = bytes(buf)
        off = 0
        while len(b) - off >= 24:
            magic, opcode, kl, el, dt, status, bl, opaque, cas = struct.unpack_from(">BBHBBHIIQ", b, off)
            if magic != 0x81:
                break
            off += 24 + bl
            k = step.opaque_keys.get(opaque)
            if k is not None and status == 0 and cas:
                target.last_cas[k] = cas


# ----------------------------------------------------------------------------
# the operation generator

GENERAL = ([b"a", b"b", b"c", b"foo", b"bar", b"tf", b"n1", b"n2", b"n3", b"cnt"]
           + [b"k%d" % i for i in range(14)]
           + [b"L" * 249 + b"z", b"k\x01\x7f", b"k\xc3\xa9t\xc3\xa9", b"k:/{}|%&", b"k\x80\xff",
              b"k.-_~!"])
BIG = [b"big0", b"big1", b"big2", b"big3"]
NUMERIC = [b"n1", b"n2", b"n3", b"cnt"]
KEY251 = b"X" * 251
KEY300 = b"Y" * 300
BINARY_ONLY = [b"b key", b"b\r\nkey"]

ALL_KEYS = set(GENERAL + BIG + BINARY_ONLY + [b"missing%d" % i for i in range(5)])
ALL_KEYS_B64 = {base64.b64encode(k): k for k in ALL_KEYS}

# Stored numbers and operands stay below 2^59 (a run's sums stay below 2^63) and no value is all whitespace: memcached reads an
# incr/decr/ma operand with strtoull straight from the item, which is not NUL-ended, so
# for an all-whitespace value it parses whatever memory follows the item, and for a
# value >= 2^63 its minus-sign check (strchr) scans past the value: both are undefined
# in memcached and differ between runs of memcached itself. Overflowing operands
# (>= 2^64) are still sent: strtoull refuses them deterministically.
NUMBERS = [b"0", b"1", b"7", b"99", b"100", b"123 ", b"123\n\x00\x01", b"  42", b"+7", b"-0", b"-5",
           b"576460752303423487", b"576460752303423486", b"18446744073709551616", b"0x10",
           b"1.5", b"007", b"4294967296", b" 1", b"12abc"]
FLAGS = [0, 0, 0, 0, 1, 123, 65535, 4294967295, None]
EXPTIMES = [0] * 12 + [3600, 86400, 2592000, 2000000000, -1, 2592001, 1000000000]


def meta_shape(cmd, features, priority):
    """Meta op shape: the command plus its single most telling feature."""
    for f in priority:
        if f in features:
            return "%s %s" % (cmd, f)
    return cmd


def clean(v):
    return v.replace(b"N", b"n")


class Gen:
    def __init__(self, seed, protocols):
        self.r = random.Random(seed)
        self.protocols = protocols
        self.opaque = 0x1000
        weights = {"text": 35, "meta": 25, "binary": 30, "udp": 10, "udpbin": 10}
        self.pw = [(p, weights[p]) for p in protocols]

    # -- helpers
    def pick(self, seq):
        return self.r.choice(seq)

    def chance(self, p):
        return self.r.random() < p

    def key(self, big=True):
        x = self.r.random()
        if big and x < 0.10:
            return self.pick(BIG)
        return self.pick(GENERAL)

    def flags(self):
        f = self.pick(FLAGS)
        return self.r.randrange(1 << 32) if f is None else f

    def exptime(self):
        return self.pick(EXPTIMES)

    def value(self, key, small=False):
        r = self.r
        if key in BIG and not small:
            x = r.random()
            if x < 0.05:
                return clean(b"B" * r.randint(1048400, 1048600))
            if x < 0.55:
                return clean(bytes([r.randrange(97, 123)]) * r.randint(65536 - 50, 65536 + 50))
        if key in NUMERIC and r.random() < 0.7:
            return self.pick(NUMBERS)
        x = r.random()
        if x < 0.08:
            return b""
        if x < 0.35:
            return clean(bytes(r.randrange(33, 127) for _ in range(r.randint(1, 20))))
        if x < 0.55:
            return self.pick(NUMBERS)
        if x < 0.75:
            return clean(r.randbytes(r.randint(1, 40)))
        if x < 0.85 and not small:
            return clean(bytes([r.randrange(97, 123)]) * r.randint(900, 1100))
        return b"hello world"

    def next_opaque(self):
        self.opaque += 1
        return self.opaque

    def next(self):
        r = self.r
        tot = sum(w for _, w in self.pw)
        x = r.uniform(0, tot)
        for p, w in self.pw:
            x -= w
            if x <= 0:
                break
        return getattr(self, "gen_" + p)()

    # -- text
    def T(self, shape, *steps):
        return Op("text:" + shape, "text", list(steps))

    def tstep(self, parts, mn=0, stats=False):
        return Step("text", parts if isinstance(parts, list) else [parts], mn=mn, stats=stats)

    def store_cmd(self, cmd, key, val=None, noreply=False, flags=None, exp=None):
        if val is None:
            val = self.value(key, small=cmd in (b"append", b"prepend"))
        f = self.flags() if flags is None else flags
        e = self.exptime() if exp is None else exp
        return b"%s %s %d %d %d%s\r\n%s\r\n" % (cmd, key, f, e, len(val), b" noreply" if noreply else b"",
                                                  val)

    def gen_text(self):
        r = self.r
        x = r.random()
        if x < 0.22:
            cmd = self.pick([b"set"] * 4 + [b"add", b"replace", b"append", b"prepend"])
            key = self.key()
            nr = self.chance(0.1)
            parts = [self.store_cmd(cmd, key, noreply=nr)]
            if self.chance(0.3):
                parts.append(b"get %s\r\n" % key)
            return self.T(cmd.decode() + (" noreply" if nr else ""), self.tstep(parts))
        if x < 0.40:
            cmd = self.pick([b"get", b"get", b"gets"])
            y = r.random()
            if y < 0.6:
                return self.T(cmd.decode(), self.tstep(b"%s %s\r\n" % (cmd, self.key())))
            if y < 0.985:
                keys = [self.key() for _ in range(r.randint(2, 10))]
                return self.T(cmd.decode() + " multi", self.tstep(b"%s %s\r\n" % (cmd, b" ".join(keys))))
            keys = [self.pick(GENERAL) for _ in range(r.randint(1000, 3000))]
            return self.T(cmd.decode() + " huge-multi", self.tstep(b"%s %s\r\n" % (cmd, b" ".join(keys))))
        if x < 0.46:
            cmd = self.pick([b"gat", b"gats"])
            keys = [self.key() for _ in range(r.randint(1, 4))]
            return self.T(cmd.decode(), self.tstep(b"%s %d %s\r\n" % (cmd, self.exptime(), b" ".join(keys))))
        if x < 0.55:
            key = self.key()
            y = r.random()
            nr = self.chance(0.1)
            val = self.value(key)
            line = b"cas %s %d %d %d %%s%s\r\n" % (key, self.flags(), self.exptime(), len(val),
                                                   b" noreply" if nr else b"")
            pre, post = line.split(b"%s")
            if y < 0.5:
                first = [b"gets %s\r\n" % key]
                if self.chance(0.5):
                    first.insert(0, self.store_cmd(b"set", key, exp=0))
                return self.T("cas fresh" + (" noreply" if nr else ""),
                              self.tstep(first),
                              self.tstep([pre, CasRef(key), post, val, b"\r\n", b"gets %s\r\n" % key]))
            if y < 0.8:
                return self.T("cas last-seen", self.tstep([pre, CasRef(key), post, val, b"\r\n"]))
            bad = self.pick([b"0", b"99999999999", b"abc", b"-1", b"18446744073709551616"])
            if bad in (b"abc", b"-1", b"18446744073709551616"):
                # A refused line's data block is then read as commands. Past 2 KB without a
                # newline memcached drops the connection together with the replies it has not
                # sent yet, and how many those are depends on its 16 KB reads: keep it small.
                val = self.value(key, small=True)
                pre = b"cas %s %d %d %d " % (key, self.flags(), self.exptime(), len(val))
            return self.T("cas bad-unique", self.tstep([pre, bad, post, val, b"\r\n"]))
        if x < 0.62:
            key = self.key()
            form = self.pick([b"delete %s\r\n", b"delete %s\r\n", b"delete %s 0\r\n", b"delete %s 10 noreply\r\n",
                              b"delete %s 0 noreply\r\n", b"delete %s noreply\r\n", b"delete %s 5\r\n"])
            name = "delete" + form.decode().replace("%s", "").replace("\r\n", "").replace("delete ", "")
            return self.T(name.strip().replace("  ", " "), self.tstep(form % key))
        if x < 0.74:
            cmd = self.pick([b"incr", b"decr"])
            key = self.pick(NUMERIC) if self.chance(0.7) else self.key()
            delta, dn = self.pick([(b"1", "1"), (b"1", "1"), (b"5", "small"), (b"1000", "small"),
                                   (b"576460752303423487", "max"), (b"18446744073709551616", "overflow"),
                                   (b"-1", "negative"), (b"abc", "non-numeric"), (b"", "missing"),
                                   (b"0", "zero"), (b"4294967296", "2^32")])
            nr = self.chance(0.08)
            line = b"%s %s %s%s\r\n" % (cmd, key, delta, b" noreply" if nr else b"")
            parts = [line]
            if self.chance(0.5):
                parts.append(b"get %s\r\n" % key)
            return self.T("%s delta=%s%s" % (cmd.decode(), dn, " noreply" if nr else ""), self.tstep(parts))
        if x < 0.78:
            key = self.key()
            nr = self.chance(0.1)
            return self.T("touch" + (" noreply" if nr else ""),
                          self.tstep(b"touch %s %d%s\r\n" % (key, self.exptime(), b" noreply" if nr else b"")))
        if x < 0.90:
            return self.text_malformed()
        if x < 0.93:
            parts = []
            for _ in range(r.randint(2, 4)):
                k = self.key(big=False)
                parts.append(self.pick([b"get %s\r\n" % k, self.store_cmd(b"set", k, val=self.value(k, True)),
                                        b"delete %s\r\n" % k, b"incr %s 1\r\n" % k, b"gets %s\r\n" % k]))
            return self.T("pipeline", self.tstep(parts))
        if x < 0.95:
            line, name = self.pick([(b"stats\r\n", "stats"), (b"stats settings\r\n", "stats settings"),
                                    (b"stats items\r\n", "stats items"), (b"stats slabs\r\n", "stats slabs"),
                                    (b"stats bogus\r\n", "stats bogus")])
            return self.T(name, self.tstep(line, stats=True))
        if x < 0.965:
            line = self.pick([b"verbosity 1\r\n", b"verbosity 0\r\n", b"verbosity\r\n", b"verbosity abc\r\n",
                              b"verbosity 1 noreply\r\n", b"verbosity 1 2 3\r\n"])
            return self.T(line.decode().strip(), self.tstep(line))
        if x < 0.98:
            return self.T("version", self.tstep(b"version\r\n"))
        if x < 0.984:
            line = self.pick([b"flush_all\r\n", b"flush_all 0\r\n", b"flush_all abc\r\n"])
            return self.T(line.decode().strip(), self.tstep(line))
        # LF-only line endings
        key = self.key(big=False)
        line = self.pick([b"get %s\n" % key, b"set %s 0 0 1\nx\r\n" % key, b"set %s 0 0 1\r\nx\n\r\n" % key,
                          b"delete %s\n" % key, b"incr %s 1\n" % key])
        return self.T("lf-only " + line.split(b" ")[0].decode(), self.tstep(line))

    def text_malformed(self):
        k = self.key(big=False)
        cases = [
            ("set vlen=-1", b"set %s 0 0 -1\r\nabc\r\n" % k),
            ("set vlen=abc", b"set %s 0 0 abc\r\nabc\r\n" % k),
            ("set exptime=abc", b"set %s 0 abc 1\r\nx\r\n" % k),
            ("set vlen=4294967295", b"set %s 0 0 4294967295\r\nx\r\n" % k),
            ("set vlen=2147483647", b"set %s 0 0 2147483647\r\nx\r\n" % k),
            ("cas missing-unique", b"cas foo 0 0 6 \r\nfoobar\r\n"),
            ("set flags=4294967296", b"set tf 4294967296 0 1\r\nx\r\n"),
            ("set flags=-1", b"set %s -1 0 1\r\nx\r\n" % k),
            ("set too-few-tokens", b"set %s 0 0\r\n" % k),
            ("set too-many-tokens", b"set %s 0 0 1 noreply extra\r\nx\r\n" % k),
            ("cas too-few-tokens", b"cas %s 0 0 1\r\nx\r\n" % k),
            ("get no-key", b"get\r\n"),
            ("gets no-key", b"gets\r\n"),
            ("gat no-key", b"gat 0\r\n"),
            ("gat bad-exptime", b"gat abc %s\r\n" % k),
            ("incr no-delta", b"incr %s\r\n" % k),
            ("delete no-key", b"delete\r\n"),
            ("touch no-exptime", b"touch %s\r\n" % k),
            ("touch bad-exptime", b"touch %s abc\r\n" % k),
            ("unknown command", self.pick([b"foo bar\r\n", b"GET a\r\n", b"sets a\r\n", b"\x01\x02\r\n",
                                           b"quit_all\r\n", b"shutdown_x\r\n"])),
            ("empty line", b"\r\n"),
            ("empty line lf", b"\n"),
            ("overlong key set", b"set %s 0 0 1\r\nx\r\n" % KEY251),
            ("overlong key get", b"get %s\r\n" % self.pick([KEY251, KEY300])),
            ("overlong key in multiget", b"get a %s b\r\n" % KEY251),
            ("overlong key delete", b"delete %s\r\n" % KEY251),
            ("overlong key incr", b"incr %s 1\r\n" % KEY251),
            ("overlong key touch", b"touch %s 0\r\n" % KEY251),
            ("many spaces set", b"set    %s    0   0   1  \r\nx\r\n" % k),
            ("many spaces leading", b"      get %s\r\n" % k),
            ("many spaces get", b"get a" + b" " * 1500 + b"b\r\n"),
            ("get 5000 spaces", b"get " + b" " * 5000 + b"\r\n"),
            ("bad data chunk", b"set %s 0 0 3\r\nabcXY\r\n" % k),
            ("bad data chunk short", b"set %s 0 0 5\r\nab\r\n\r\n\r\n" % k),
            ("bad data chunk lf", b"set %s 0 0 2\r\nab\n\n" % k),
            ("set too large", b"set big0 0 0 1048600\r\n" + b"x" * 1048600 + b"\r\n"),
            ("line too long", b"set " + b"x" * 20000 + b" 0 0 1\r\nx\r\n"),
            ("incr key tab", b"incr\t%s 1\r\n" % k),
        ]
        weights = [1] * len(cases)
        weights[4] = 0.3       # set vlen=2147483647 (a server that waits for the data times out)
        weights[-3] = 0.1      # set too large (1 MB)
        weights[-2] = 0.1      # line too long (closes)
        name, line = self.r.choices(cases, weights)[0]
        return self.T("malformed " + name, self.tstep(line))

    # -- meta
    def end_meta(self, parts, bits, key, b64, cas_chance):
        """Ends a meta request line: maybe a C flag with the key's last CAS, the b flag
        for a base64 key, CR LF."""
        if self.chance(cas_chance):
            parts += [b" C", CasRef(key)]
            bits.append("C")
        if b64:
            parts.append(b" b")
            bits.append("b")
        parts.append(b"\r\n")
        return parts

    def M(self, shape, *steps):
        return Op("meta:" + shape, "meta", list(steps))

    def mstep(self, parts, key=None, mn=0):
        return Step("meta", parts if isinstance(parts, list) else [parts], key=key, mn=mn)

    def mkey(self, big=True):
        key = self.key(big)
        if self.chance(0.08):
            return key, base64.b64encode(key), True
        return key, key, False

    def gen_meta(self):
        r = self.r
        x = r.random()
        if x < 0.30:
            key, wkey, b64 = self.mkey()
            pool = [b"v", b"k", b"f", b"s", b"c", b"t", b"h", b"l", b"O%d" % r.randrange(1000), b"q",
                    b"T%d" % self.pick([0, 3600, -1]), b"N%d" % self.pick([0, 30, 3600]), b"u"]
            flags = r.sample(pool, r.randint(0, 6))
            if b64:
                flags.append(b"b")
            shape = meta_shape("mg", [f[:1].decode() for f in flags], ["b", "N", "k", "q"])
            return self.M(shape, self.mstep(b"mg %s%s\r\n" % (wkey, b"".join(b" " + f for f in flags)),
                                            key=key))
        if x < 0.55:
            key, wkey, b64 = self.mkey()
            val = self.value(key)
            pool = [b"c", b"k", b"O%d" % r.randrange(1000), b"q", b"T%d" % self.exptime(), b"F%d" % self.flags(),
                    b"I", b"M" + self.pick([b"E", b"A", b"P", b"R", b"S", b"s", b"a", b"X"])]
            flags = r.sample(pool, r.randint(0, 4))
            shape_bits = [f[:1].decode() if f[:1] != b"M" else "M" + f[1:].decode() for f in flags
                          if f[:1] in b"qI" or f[:2] in (b"Ms", b"Ma", b"MX")]
            steps = []
            y = r.random()
            if y < 0.15:
                pre = b"ms %s 1 T0%s\r\nv\r\n" % (wkey, b" b" if b64 else b"") if self.chance(0.5) else b""
                steps.append(self.mstep([pre, b"mg %s%s c\r\n" % (wkey, b" b" if b64 else b"")], key=key))
                flags += [b"C", CasRef(key)]
                shape_bits.append("C")
            elif y < 0.22:
                flags += [b"C", CasRef(key)]
                shape_bits.append("C")
            elif y < 0.26:
                flags.append(b"E%d" % r.randrange(10 ** 12, 10 ** 13))
                shape_bits.append("E")
            if b64:
                flags.append(b"b")
                shape_bits.append("b")
            parts = [b"ms %s %d" % (wkey, len(val))]
            i = 0
            while i < len(flags):
                f = flags[i]
                if f == b"C":
                    parts += [b" C", flags[i + 1]]
                    i += 2
                    continue
                parts.append(b" " + f)
                i += 1
            parts.append(b"\r\n" + val + b"\r\n")
            steps.append(self.mstep(parts, key=key))
            return self.M(meta_shape("ms", shape_bits, ["E", "Ms", "Ma", "MX", "b", "C", "I", "q"]), *steps)
        if x < 0.65:
            key, wkey, b64 = self.mkey()
            pool = [b"q", b"I", b"T30", b"O%d" % r.randrange(1000), b"k", b"x"]
            flags = r.sample(pool, r.randint(0, 3))
            bits = [f[:1].decode() for f in flags if f[:1] in b"qIx"]
            parts = self.end_meta([b"md %s" % wkey] + [b" " + f for f in flags], bits, key, b64, cas_chance=0.2)
            return self.M(meta_shape("md", bits, ["x", "b", "C", "I", "q"]), self.mstep(parts, key=key))
        if x < 0.80:
            key = self.pick(NUMERIC) if self.chance(0.7) else self.key()
            wkey, b64 = key, False
            if self.chance(0.08):
                wkey, b64 = base64.b64encode(key), True
            # No T: when the number grows a digit, memcached 1.6.18 replaces the item and
            # applies T to the old copy (the new one keeps its TTL), a memcached bug flexkvs
            # does not copy (it applies T to the item the key names).
            pool = [b"N%d" % self.pick([0, 3600]), b"J%d" % self.pick([0, 13, 576460752303423487]),
                    b"D%s" % self.pick([b"1", b"10", b"576460752303423487", b"abc", b"-1", b"18446744073709551616"]),
                    b"M" + self.pick([b"I", b"+", b"D", b"-", b"i", b"d", b"X"]),
                    b"O%d" % r.randrange(1000), b"q", b"t", b"c", b"v", b"k"]
            flags = r.sample(pool, r.randint(0, 5))
            bits = [f[:1].decode() if f[:1] not in b"MD" else f.decode() for f in flags
                    if f[:1] in b"Nqv" or f in (b"Mi", b"Md", b"MX", b"Dabc", b"D-1", b"D18446744073709551616")]
            parts = self.end_meta([b"ma %s" % wkey] + [b" " + f for f in flags], bits, key, b64, cas_chance=0.1)
            return self.M(meta_shape("ma", bits, ["Mi", "Md", "MX", "Dabc", "D-1", "D18446744073709551616", "b", "C",
                                                  "N", "q", "v"]), self.mstep(parts, key=key))
        if x < 0.83:
            return self.M("mn", self.mstep(b"mn\r\n", mn=1))
        if x < 0.87:
            key = self.key()
            return self.M("me", self.mstep(b"me %s\r\n" % key, key=key))
        k = self.key(big=False)
        name, line = self.pick([
            ("mg no-key", b"mg\r\n"),
            ("mg bad-flag", b"mg %s v !\r\n" % k),
            ("mg dup-flag", b"mg %s v v\r\n" % k),
            ("mg overlong-key", b"mg %s v\r\n" % KEY251),
            ("mg bad-base64", b"mg !!!! b v\r\n"),
            ("mg opaque-too-long", b"mg %s O%s\r\n" % (k, b"1" * 40)),
            ("ms no-datalen", b"ms %s\r\n" % k),
            ("ms bad-datalen", b"ms %s abc\r\nx\r\n" % k),
            ("ms negative-datalen", b"ms %s -1\r\nx\r\n" % k),
            ("ms bad-flag", b"ms %s 1 !\r\nx\r\n" % k),
            ("ms bad-mode", b"ms %s 1 MZ\r\nx\r\n" % k),
            ("ms bad-data-chunk", b"ms %s 1\r\nxyz\r\n" % k),
            ("ms too-large", b"ms big1 1048600\r\n" + b"y" * 1048600 + b"\r\n"),
            ("md bad-flag", b"md %s !\r\n" % k),
            ("ma bad-delta", b"ma %s Dabc\r\n" % k),
            ("ma non-numeric", b"ma big2\r\n"),
            ("me no-key", b"me\r\n"),
            ("mn with-args", b"mn foo\r\n"),
            ("mx unknown meta", b"mx %s\r\n" % k),
            ("ms overlong-key", b"ms %s 1\r\nx\r\n" % KEY251),
        ])
        mn = 1 if line.startswith(b"mn ") else 0
        return self.M("malformed " + name, self.mstep(line, mn=mn))

    # -- binary
    def B(self, shape, *steps):
        return Op("bin:" + shape, "binary", list(steps))

    def bstep(self, packets, keys=None):
        """packets: list of (parts, opaque, key)"""
        parts, ok = [], {}
        for p, opq, key in packets:
            parts += p
            if key is not None:
                ok[opq] = key
        return Step("binary", parts, opaque_keys=ok)

    def bpk(self, opcode, key=b"", **kw):
        opq = self.next_opaque()
        return (bin_packet(opcode, key=key, opaque=opq, **kw), opq, key)

    def store_extras(self):
        return struct.pack(">II", self.flags(), self.exptime() & 0xFFFFFFFF)

    def gen_binary(self):
        r = self.r
        x = r.random()
        if x < 0.20:
            op = self.pick([0x00, 0x0C, 0x09, 0x0D])
            key = self.key() if self.chance(0.95) else self.pick(BINARY_ONLY)
            return self.B(BIN_OPS[op].lower(), self.bstep([self.bpk(op, key)]))
        if x < 0.25:
            keys = [self.key() for _ in range(r.randint(2, 8))]
            pk = [self.bpk(self.pick([0x09, 0x0D]), k) for k in keys[:-1]] + [self.bpk(0x0C, keys[-1])]
            return self.B("getq batch", self.bstep(pk))
        if x < 0.45:
            op = self.pick([0x01, 0x01, 0x01, 0x11, 0x02, 0x12, 0x03, 0x13])
            key = self.key() if self.chance(0.97) else self.pick(BINARY_ONLY)
            val = self.value(key)
            y = r.random()
            if y < 0.12:
                first = [self.bpk(0x00, key)]
                if self.chance(0.5):
                    first.insert(0, self.bpk(0x01, key, extras=struct.pack(">II", 0, 0), value=b"v"))
                return self.B(BIN_OPS[op].lower() + " cas fresh",
                              self.bstep(first),
                              self.bstep([self.bpk(op, key, extras=self.store_extras(), value=val,
                                                   cas=CasRef(key, True)), self.bpk(0x00, key)]))
            if y < 0.2:
                return self.B(BIN_OPS[op].lower() + " cas bad",
                              self.bstep([self.bpk(op, key, extras=self.store_extras(), value=val, cas=BAD_CAS)]))
            return self.B(BIN_OPS[op].lower(), self.bstep([self.bpk(op, key, extras=self.store_extras(), value=val)]))
        if x < 0.53:
            op = self.pick([0x04, 0x04, 0x14])
            key = self.key()
            if self.chance(0.2):
                return self.B(BIN_OPS[op].lower() + " cas", self.bstep([self.bpk(op, key, cas=CasRef(key, True))]))
            return self.B(BIN_OPS[op].lower(), self.bstep([self.bpk(op, key)]))
        if x < 0.65:
            op = self.pick([0x05, 0x06, 0x05, 0x06, 0x15, 0x16])
            key = self.pick(NUMERIC) if self.chance(0.7) else self.key()
            delta = self.pick([1, 1, 5, 1000, 2 ** 59 - 1, 0, 2 ** 32])
            initial = self.pick([0, 10, 2 ** 59 - 1])
            exp, en = self.pick([(0, "0"), (0, "0"), (3600, "3600"), (0xFFFFFFFF, "ffffffff")])
            return self.B("%s exp=%s" % (BIN_OPS[op].lower(), en),
                          self.bstep([self.bpk(op, key, extras=struct.pack(">QQI", delta, initial, exp)),
                                      self.bpk(0x00, key)]))
        if x < 0.71:
            op = self.pick([0x0E, 0x0F, 0x19, 0x1A])
            key = self.key() if self.chance(0.8) else b"missing%d" % r.randrange(5)
            val = self.value(key, small=True)
            return self.B(BIN_OPS[op].lower(), self.bstep([self.bpk(op, key, value=val), self.bpk(0x00, key)]))
        if x < 0.77:
            op = self.pick([0x1C, 0x1D, 0x1E, 0x23, 0x24])
            key = self.key()
            return self.B(BIN_OPS[op].lower(),
                          self.bstep([self.bpk(op, key, extras=struct.pack(">I", self.exptime() & 0xFFFFFFFF))]))
        if x < 0.80:
            return self.B("noop", self.bstep([self.bpk(0x0A)]))
        if x < 0.82:
            return self.B("version", self.bstep([self.bpk(0x0B)]))
        if x < 0.824:
            op = self.pick([0x08, 0x18])
            ext = self.pick([b"", b"\x00\x00\x00\x00"])
            return self.B("%s extras=%d" % (BIN_OPS[op].lower(), len(ext)), self.bstep([self.bpk(op, extras=ext)]))
        if x < 0.85:
            key = self.pick([b"", b"settings", b"detail on", b"detail off", b"items", b"slabs", b"bogus"])
            return self.B("stat %r" % key.decode(), self.bstep([self.bpk(0x10, key)]))
        if x < 0.855:
            op = self.pick([0x1B, 0x1F, 0x25, 0x30, 0x45, 0x8A, 0xFE, 0x20])
            # Never with a body: memcached answers and then swallows the body a second time
            # from what follows (the next request is lost), a memcached bug not to copy.
            val = b""
            return self.B("unknown opcode" + (" with body" if val else ""),
                          self.bstep([self.bpk(op, b"k1" if val else b"", value=val)]))
        if x < 0.88:
            return self.gen_binary()
        if x < 0.881:
            val = b"z" * 1048700
            return self.B("set too large", self.bstep([self.bpk(0x01, b"big3", extras=struct.pack(">II", 0, 0),
                                                               value=val), self.bpk(0x00, b"big3")]))
        if x < 0.8815:
            return self.B("quit", self.bstep([self.bpk(self.pick([0x07, 0x17]))]))
        # bad extras / lengths
        key = self.key(big=False)
        name, pk = self.pick([
            ("get with extras", lambda: self.bpk(0x00, key, extras=b"\x00\x00\x00\x00")),
            ("set without extras", lambda: self.bpk(0x01, key, value=b"abc")),
            ("set extras=4", lambda: self.bpk(0x01, key, extras=b"\x00\x00\x00\x00", value=b"abc")),
            ("incr extras=8", lambda: self.bpk(0x05, key, extras=b"\x00" * 8)),
            ("delete with extras", lambda: self.bpk(0x04, key, extras=b"\x00" * 4)),
            ("touch without extras", lambda: self.bpk(0x1C, key)),
            ("gat without extras", lambda: self.bpk(0x1D, key)),
            ("noop with body", lambda: self.bpk(0x0A, b"", value=b"abc")),
            ("version with key", lambda: self.bpk(0x0B, key)),
            ("get without key", lambda: self.bpk(0x00, b"")),
            ("set without key", lambda: self.bpk(0x01, b"", extras=b"\x00" * 8, value=b"v")),
            ("append with extras", lambda: self.bpk(0x0E, key, extras=b"\x00" * 8, value=b"v")),
            ("keylen > bodylen", lambda: self.bpk(0x00, key, keylen=len(key) + 10)),
            ("extlen+keylen > bodylen", lambda: self.bpk(0x01, key, extras=b"\x00" * 8, extlen=8,
                                                         bodylen=len(key) + 4)),
            ("overlong key get", lambda: self.bpk(0x00, KEY251)),
            ("overlong key set", lambda: self.bpk(0x01, KEY251, extras=b"\x00" * 8, value=b"v")),
            ("flush extras=8", lambda: self.bpk(0x08, extras=b"\x00" * 8)),
            ("datatype=1", lambda: self.bpk(0x00, key, datatype=1)),
            ("vbucket!=0", lambda: self.bpk(0x00, key, vbucket=7)),
        ])
        return self.B("bad " + name, self.bstep([pk()]))

    # -- udp
    def U(self, shape, line, seq=(0, 1)):
        return Op("udp:" + shape, "udp", [Step("udp", [line], udp_hdr=seq)])

    def gen_udp(self):
        r = self.r
        x = r.random()
        key = self.key(big=False)
        if x < 0.35:
            return self.U("get", b"get %s\r\n" % key)
        if x < 0.45:
            keys = [self.key(big=False) for _ in range(r.randint(2, 6))]
            return self.U("gets multi", b"gets %s\r\n" % b" ".join(keys))
        if x < 0.70:
            return self.U("set", self.store_cmd(b"set", key, val=self.value(key, small=True)))
        if x < 0.80:
            return self.U("delete", b"delete %s\r\n" % key)
        if x < 0.93:
            return self.U("incr", b"%s %s %d\r\n" % (self.pick([b"incr", b"decr"]), self.pick(NUMERIC), r.randint(0, 9)))
        if x < 0.935:
            v = clean(bytes([r.randrange(97, 123)]) * r.randint(2020, 2040))
            return self.U("set ~2030 bytes", self.store_cmd(b"set", key, val=v))
        if x < 0.94:
            return self.U("get seq=1 of 1", b"get %s\r\n" % key, seq=(1, 1))
        return self.U("gat", b"gat %d %s\r\n" % (self.exptime(), key))


    # -- binary over UDP: one datagram per op, most of them a lone request (the shape
    # flexkvs's dma steering parses in its pipeline and answers without its protocol
    # handler), so no NOOP sentinel; the last request's reply ends the exchange.
    def UB(self, shape, packets):
        step = self.bstep(packets)
        step.proto = "udpbin"
        step.last_opaque = packets[-1][1]
        return Op("udpbin:" + shape, "udpbin", [step])

    def gen_udpbin(self):
        r = self.r
        x = r.random()
        key = self.key(big=False)
        if x < 0.40:
            return self.UB("get", [self.bpk(0x00, key)])
        if x < 0.43:
            return self.UB("get missing", [self.bpk(0x00, b"missing%d" % r.randrange(5))])
        if x < 0.48:
            name, pk = self.pick([
                ("get with extras", lambda: self.bpk(0x00, key, extras=b"\x00\x00\x00\x00")),
                ("get with value", lambda: self.bpk(0x00, key, value=b"abc")),
                ("get without key", lambda: self.bpk(0x00)),
                ("get overlong key", lambda: self.bpk(0x00, KEY251)),
            ])
            return self.UB("bad " + name, [pk()])
        if x < 0.70:
            val = self.value(key, small=True)
            if self.chance(0.15):
                val = clean(bytes([r.randrange(97, 123)]) * r.randint(1300, 4000))
            return self.UB("set", [self.bpk(0x01, key, extras=self.store_extras(), value=val)])
        if x < 0.75:
            return self.UB("setq+get", [self.bpk(0x11, key, extras=self.store_extras(), value=self.value(key, small=True)),
                                        self.bpk(0x00, key)])
        if x < 0.83:
            return self.UB("delete", [self.bpk(0x04, key)])
        if x < 0.90:
            return self.UB("getk", [self.bpk(0x0C, key)])
        # (memcached drops what follows a miss's error reply in a datagram: no GET
        # before the last request)
        keys = [self.key(big=False) for _ in range(r.randint(1, 4))]
        return self.UB("getq batch", [self.bpk(0x09, k) for k in keys] + [self.bpk(0x00, key)])


# ----------------------------------------------------------------------------
# runner

def short(b, n=300):
    s = repr(bytes(b))
    return s if len(s) <= n else s[:n] + "...(%d bytes)" % len(b)


class Runner:
    def __init__(self, a, b, resync):
        self.a = a
        self.b = b
        self.targets = (a, b)
        self.bij = ({}, {})
        self.reqid = 0
        self.resync = resync
        for t in self.targets:
            t.old_reqids = set()

    def exec_step(self, step, opaque_sentinel):
        jobs = []
        reqs = []
        for t in self.targets:
            req = step.build(t)
            reqs.append(req)
            if step.proto in ("text", "meta"):
                jobs.append(TcpJob(t, step.proto, req + b"mn\r\n", text_done(step.mn + 1)))
            elif step.proto == "binary":
                noop = bin_packet(0x0A, opaque=opaque_sentinel)[0]
                jobs.append(TcpJob(t, "binary", req + noop, binary_done(opaque_sentinel)))
            elif step.proto == "udpbin":
                jobs.append(UdpBinJob(t, struct.pack(">HHHH", self.reqid, 0, 1, 0) + req, self.reqid, step.last_opaque))
            else:
                seq, total = step.udp_hdr or (0, 1)
                hdr = struct.pack(">HHHH", self.reqid, seq, total, 0)
                jobs.append(UdpJob(t, hdr + req + b"mn\r\n", self.reqid, step.mn))
        run_jobs(jobs)
        res = []
        for t, j, req in zip(self.targets, jobs, reqs):
            buf = bytes(j.buf)
            if j.status == "timeout":
                t.timeout_shapes[getattr(self, "cur_shape", "?")] += 1
            if step.proto in ("udp", "udpbin"):
                t.old_reqids.add(self.reqid)
                if j.status == "timeout":
                    t.timeouts += 1
            else:
                if j.status == "closed":
                    t.closes += 1
                    t.drop(step.proto)
                elif j.status == "timeout":
                    t.timeouts += 1
                    t.drop(step.proto)
            track_cas(t, step, buf)
            res.append((req, buf, j.status))
        if step.proto in ("udp", "udpbin"):
            self.reqid = (self.reqid + 1) & 0xFFFF
            if self.reqid == 0:
                for t in self.targets:
                    t.old_reqids.clear()
        return res

    def run_op(self, op, idx):
        self.cur_shape = op.shape
        trans = ([], [])
        sentinel = 0xF0000000 | (idx & 0x0FFFFFFF)
        for step in op.steps:
            res = self.exec_step(step, sentinel)
            for k in (0, 1):
                trans[k].append((step, ) + res[k])
        norms = []
        for k in (0, 1):
            n = Norm()
            for step, req, buf, status in trans[k]:
                if step.proto in ("binary", "udpbin"):
                    norm_binary(buf, n)
                else:
                    norm_text(buf, n, stats=step.stats)
                if status != "ok":
                    n.out.append(b"<%s>" % status.upper().encode())
            norms.append(n)
        same = fmt_cmp_ok(norms[0], norms[1], self.bij)
        return same, trans, norms

    def forget_keys(self, trans):
        """After a difference: delete the keys the op touched on both servers."""
        keys = set()
        for step, req, _buf, _status in trans:
            if step.proto in ("binary", "udpbin"):
                off = 0
                while len(req) - off >= 24 and req[off] == 0x80:
                    kl, el = struct.unpack_from(">HB", req, off + 2)
                    bl = struct.unpack_from(">I", req, off + 8)[0]
                    k = req[off + 24 + el:off + 24 + el + kl]
                    if k in ALL_KEYS:
                        keys.add(k)
                    off += 24 + bl
            else:
                for tok in req.split():
                    if tok in ALL_KEYS:
                        keys.add(tok)
                    elif tok in ALL_KEYS_B64:
                        keys.add(ALL_KEYS_B64[tok])
        if not keys:
            return
        parts = []
        for k in sorted(keys):
            parts += bin_packet(0x14, key=k, opaque=1)
        self.exec_step(Step("binary", parts), 0xEFFFFFFF)


def render(trans, width=300):
    lines = []
    for step, req, buf, status in trans:
        lines.append("    request: %s" % short(req, width))
        lines.append("    reply:   %s%s" % (short(buf, 2 * width), "" if status == "ok" else " <%s>" % status.upper()))
    return "\n".join(lines)


def signature(norm):
    s = repr(b" | ".join(norm.out))
    s = re.sub(r"\d+", "#", s)
    return s if len(s) <= 110 else s[:110] + "..."


def stat_lines(target, sub):
    """(name, value) of each STAT line `stats SUB` prints, in order."""
    step = Step("text", [b"stats%s\r\n" % sub])
    job = TcpJob(target, "text", step.build(target) + b"mn\r\n", text_done(1))
    run_jobs([job])
    if job.status != "ok":
        target.drop("text")
    return [(m.group(1).decode("latin-1"), m.group(2).decode("latin-1"))
            for m in re.finditer(rb"^STAT (\S+) ?([^\r\n]*)", bytes(job.buf), re.M)]


def stat_names(target, sub):
    return [name for name, _ in stat_lines(target, sub)]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--flexkvs", required=True)
    ap.add_argument("--memcached", required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--ops", type=int, default=10000)
    ap.add_argument("--protocols", default="text,meta,binary,udp",
                    help="comma-separated: text, meta, binary, udp (text over UDP), udpbin (binary over UDP)")
    ap.add_argument("--flexkvs-args", default="", help="more flexkvs options, e.g. '--steering dma'")
    ap.add_argument("--flexkvs-stat", action="append", default=[], metavar="NAME",
                    help="print flexkvs's `stats steering` NAME summed over workers at the end (e.g. parsed_gets: "
                         "that a path was taken)")
    ap.add_argument("--report")
    ap.add_argument("--max-diffs", type=int, default=0, help="stop after N differences (0: no limit)")
    ap.add_argument("--no-resync", action="store_true", help="do not delete the op's keys on both servers after a difference")
    ap.add_argument("--quiet", action="store_true", help="do not print individual differences")
    ap.add_argument("--log", help="write every op (request and both replies, truncated) to this file")
    args = ap.parse_args()
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    for p in protocols:
        if p not in ("text", "meta", "binary", "udp", "udpbin"):
            ap.error("unknown protocol %r" % p)
    if "udp" in protocols and "udpbin" in protocols:
        ap.error("udp and udpbin cannot be mixed: after a binary error over UDP memcached runs only the first "
                 "command of a text datagram")

    signal.signal(signal.SIGTERM, _sig)
    signal.signal(signal.SIGINT, _sig)
    t0 = time.monotonic()
    try:
        mc = Target("memcached", args.memcached)
        fx = Target("flexkvs", args.flexkvs, args.flexkvs_args.split())
    except (RuntimeError, OSError) as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    runner = Runner(mc, fx, not args.no_resync)
    gen = Gen(args.seed, protocols)
    report = open(args.report, "w") if args.report else None
    log = open(args.log, "w") if args.log else None
    if report:
        report.write("# memcached_diff seed=%d ops=%d protocols=%s\n# memcached: %s\n# flexkvs:   %s\n\n" % (
            args.seed, args.ops, ",".join(protocols), " ".join(mc.args), " ".join(fx.args)))
    diffs = 0
    groups = collections.OrderedDict()
    shapes = collections.Counter()
    crashed = None
    done_ops = 0
    for idx in range(args.ops):
        op = gen.next()
        shapes[op.shape] += 1
        same, trans, norms = runner.run_op(op, idx)
        done_ops += 1
        if log:
            log.write("#%d %s %s\n  memcached:\n%s\n  flexkvs:\n%s\n" % (
                idx, op.shape, "same" if same else "DIFF", render(trans[0], 200), render(trans[1], 200)))
        if not same:
            diffs += 1
            g = groups.setdefault(op.shape, {"count": 0, "first": idx, "sigs": collections.Counter(),
                                             "example": None})
            g["count"] += 1
            g["sigs"][(signature(norms[0]), signature(norms[1]))] += 1
            if g["example"] is None:
                g["example"] = (idx, trans)
            text = "DIFF op #%d %s (%s)\n  memcached:\n%s\n  flexkvs:\n%s\n" % (
                idx, op.proto, op.shape, render(trans[0]), render(trans[1]))
            if report:
                report.write(text + "\n")
            if not args.quiet and diffs <= 20:
                print(text)
            if runner.resync:
                runner.forget_keys(trans[0])
        if not (mc.alive() and fx.alive()):
            crashed = [t.name for t in (mc, fx) if not t.alive()]
            break
        if args.max_diffs and diffs >= args.max_diffs:
            break

    missing = {}
    extra = {}
    if crashed is None:
        for sub in (b"", b" settings"):
            a = stat_names(mc, sub)
            b = set(stat_names(fx, sub))
            name = "stats" + sub.decode()
            missing[name] = [n for n in a if n not in b]
            extra[name] = sorted(b - set(a))
    steering = stat_lines(fx, b" steering") if crashed is None and args.flexkvs_stat else []
    elapsed = time.monotonic() - t0

    out = []
    for name in args.flexkvs_stat:
        total = sum(int(v) for n, v in steering if (n == name or n.endswith(":" + name)) and v.isdigit())
        out.append("flexkvs %s=%d" % (name, total))
    out.append("")
    out.append("== divergence classes (shape: count, first op) ==")
    for shape, g in sorted(groups.items(), key=lambda kv: (-kv[1]["count"], kv[0])):
        out.append("%-50s %6d  first #%d  (of %d ops with this shape)" % (shape, g["count"], g["first"],
                                                                          shapes[shape]))
        for (sa, sb), c in g["sigs"].most_common(3):
            out.append("      %5d x memcached %s" % (c, sa))
            out.append("              flexkvs   %s" % sb)
    for name in missing:
        if missing[name]:
            out.append("`%s`: STAT names memcached prints that flexkvs lacks (%d): %s" % (
                name, len(missing[name]), " ".join(missing[name])))
        if extra[name]:
            out.append("`%s`: extra STAT names in flexkvs (informational, %d): %s" % (
                name, len(extra[name]), " ".join(extra[name])))
    for t in (mc, fx):
        if t.timeout_shapes:
            out.append("%s timed out on: %s" % (t.name, ", ".join("%s x%d" % kv for kv in
                                                                  t.timeout_shapes.most_common())))
    n_missing = sum(len(v) for v in missing.values())
    summary = ("SUMMARY seed=%d ops=%d/%d protocols=%s differences=%d classes=%d missing_stat_names=%d "
               "timeouts(mc/fx)=%d/%d closes(mc/fx)=%d/%d stale_udp(mc/fx)=%d/%d%s elapsed=%.1fs" % (
                   args.seed, done_ops, args.ops, ",".join(protocols), diffs, len(groups), n_missing,
                   mc.timeouts, fx.timeouts, mc.closes, fx.closes, mc.stale_udp, fx.stale_udp,
                   (" CRASHED=" + ",".join(crashed)) if crashed else "", elapsed))
    out.append(summary)
    print("\n".join(out))
    if report:
        report.write("\n".join(out) + "\n")
        report.close()
    if log:
        log.close()
    _kill_all()
    if crashed:
        return 2
    return 1 if (diffs or n_missing) else 0


if __name__ == "__main__":
    sys.exit(main())
