#!/usr/bin/env python3
"""Instructions per source line of one function, from a callgrind run made with
--dump-instr=yes (e.g. CALLGRIND_OPTIONS=--dump-instr=yes KEEP=DIR bash
Scripts/kvs-callgrind.sh), joined with the line table of the binary that ran
(objdump -dl on the copy that still has its debug information: valgrind measured a
stripped copy, whose code addresses are the same).

    python3 Scripts/callgrind-lines.py CALLGRIND_FILE BINARY FUNCTION_REGEX [REQUESTS] [--asm]

FUNCTION_REGEX matches the mangled name in the callgrind file (e.g.
'SteeringPipelineC5steer_7replies'). Costs are the function's own instructions (not
its callees'), divided by REQUESTS when given. --asm also lists every instruction
that cost at least half an instruction per request.
"""
import collections
import re
import subprocess
import sys


def own_costs(path, pattern):
    """Self cost per instruction address of the functions whose name matches."""
    costs = collections.Counter()
    fn, last, call_line = None, 0, False
    for line in open(path, errors="replace"):
        if line.startswith("fn="):
            fn = line[3:].strip()
            continue
        if line.startswith("calls="):
            call_line = True  # the next cost line is the call's inclusive cost
            continue
        if not line[:1] or line[0] not in "0123456789+-*":
            continue
        parts = line.split()
        p = parts[0]
        if p.startswith("0x"):
            address = int(p, 16)
        elif p[0] in "+-":
            step = int(p[1:], 0)
            address = last + step if p[0] == "+" else last - step
        elif p == "*":
            address = last
        else:
            continue
        last = address
        if call_line:
            call_line = False
            continue
        if fn and re.search(pattern, fn):
            costs[address] += int(parts[-1])
    return costs


def main():
    args = [a for a in sys.argv[1:] if a != "--asm"]
    if len(args) < 3:
        sys.exit(__doc__)
    path, binary, pattern = args[:3]
    requests = float(args[3]) if len(args) > 3 else 1.0
    costs = own_costs(path, pattern)
    if not costs:
        sys.exit(f"no cost for a function matching {pattern!r} (was the run made with --dump-instr=yes?)")
    start, stop = min(costs), max(costs) + 16
    listing = subprocess.run(["objdump", "-dl", "--no-show-raw-insn", binary, f"--start-address={start:#x}",
                              f"--stop-address={stop:#x}"], capture_output=True, text=True, check=True).stdout
    source, by_line, hot = "?", collections.Counter(), []
    for line in listing.splitlines():
        if re.match(r"^/.*:\d+", line):
            source = line.rsplit("/", 1)[-1]
            continue
        m = re.match(r"^\s+([0-9a-f]+):\s+(.*)", line)
        if m:
            cost = costs.get(int(m.group(1), 16), 0) / requests
            by_line[source] += cost
            if cost >= 0.5:
                hot.append(f"{cost:8.1f}  {m.group(1)}  {m.group(2)[:64]:64s}  {source}")
    print(f"{sum(costs.values()) / requests:.0f} instructions" + (" per request" if requests != 1 else ""))
    for source, cost in by_line.most_common(40):
        if cost >= 0.5:
            print(f"{cost:8.1f}  {source}")
    if "--asm" in sys.argv:
        print("\n".join(hot))


main()
