#!/usr/bin/env python3
"""Prints a memcached-compatible server's stats as `NAME VALUE` lines.

    python3 Scripts/kvs-stats.py PORT [GROUP]   e.g. 11211 steering (flexkvs's `stats steering`)

Connects to 127.0.0.1:PORT, sends `stats [GROUP]` and prints each `STAT NAME VALUE` line
without its `STAT`. Exits non-zero when the server cannot be reached (the benchmark
scripts poll it to see a server come up).
"""
import socket
import sys

command = b"stats" + (b" " + sys.argv[2].encode() if len(sys.argv) > 2 else b"") + b"\r\n"
with socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10) as connection:
    connection.sendall(command)
    reply = b""
    while not reply.endswith(b"END\r\n"):
        chunk = connection.recv(65536)
        if not chunk:
            sys.exit("kvs-stats: the server closed the connection")
        reply += chunk
for line in reply.decode().split("\r\n"):
    if line.startswith("STAT "):
        print(line[5:])
