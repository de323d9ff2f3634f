"""`make bench-instructions`: instructions per request (valgrind's callgrind), the service against `orjson.loads`.

Wall-clock ratios on shared 2-core machines move by up to 2x between runs (bench/RESULTS.md), so a change worth 5 %
cannot be seen in them. Instruction counts do not move: callgrind counts what the program executes, the same for the
same code, input and hash seed whatever else the machine is doing. For each case this reports the instructions of one
`orjson.loads` of the request body and of one request through the service (request bytes to response bytes through the
WSGI app, as bench/run.py times it, the ledger's writes included), and their ratio.

This is a diagnostic, not the targets' measure (they are about time). The time ratio is higher than the instruction
ratio: orjson's C runs several instructions per cycle, the interpreter fewer.

Each figure is the difference between a child process that makes N calls and one that makes none (start-up and
warm-up cancel out), with PYTHONHASHSEED fixed so that sets and dicts iterate alike in every run. The children run
in parallel, one per core; each takes about a minute under callgrind.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import orjson

from cds_service.state import state

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CASES = (("patient-view", 10), ("patient-view", 100), ("order-select", 100))
_COLLECTED = re.compile(r"Collected : (\d+)")


def child(hook: str, size: int, what: str, calls: int) -> None:
    """Run in the counted process: set up and warm up the app, then make `calls` calls of `what`."""
    from bench.run import bench_app, service_call, settle  # noqa: PLC0415

    logging.disable(logging.WARNING)
    app = bench_app()
    body, call = service_call(app, hook, size)
    for _ in range(5):
        call()
        orjson.loads(body)
    settle(app)
    function = call if what == "service" else partial(orjson.loads, body)
    for _ in range(calls):
        function()
    state(app).ledger.flush()  # the rows these calls queued are written in this process: count them too


def collected(valgrind_stderr: str) -> int:
    """The instruction total callgrind prints when the program ends."""
    match = _COLLECTED.search(valgrind_stderr)
    if match is None:
        raise RuntimeError("callgrind printed no instruction total:\n" + valgrind_stderr[-2000:])
    return int(match.group(1))


def _count(hook: str, size: int, what: str, calls: int) -> int:
    command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
               "--child", hook, str(size), what, str(calls)]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=True)
    return collected(result.stderr)


def measure(calls: int, cases: tuple[tuple[str, int], ...] = CASES) -> list[dict]:
    """Per case: instructions per `orjson.loads` and per service request, and their ratio."""
    jobs = [(hook, size, what, n) for hook, size in cases
            for what, n in (("none", 0), ("orjson", calls), ("service", calls))]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        totals = dict(zip(jobs, pool.map(lambda job: _count(*job), jobs), strict=True))
    rows = []
    for hook, size in cases:
        base = totals[(hook, size, "none", 0)]
        parse = (totals[(hook, size, "orjson", calls)] - base) / calls
        service = (totals[(hook, size, "service", calls)] - base) / calls
        rows.append({"hook": hook, "size": size, "parse": parse, "service": service, "ratio": service / parse})
    return rows


def report(rows: list[dict], calls: int) -> str:
    lines = [
        "# Instructions per request",
        "",
        f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `make bench-instructions` ({platform.machine()}, Python "
        f"{platform.python_version()}): valgrind's callgrind, {calls} calls against none, PYTHONHASHSEED=0. "
        "A diagnostic that does not move with the host's load; the targets are about time (bench/RESULTS.md).",
        "",
        "| hook | resources | `orjson.loads` (millions) | service (millions) | ratio |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| {r['hook']} | {r['size']} | {r['parse'] / 1e6:.2f} | {r['service'] / 1e6:.2f} | {r['ratio']:.2f}x |"
              for r in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    if len(sys.argv) == 6 and sys.argv[1] == "--child":
        child(sys.argv[2], int(sys.argv[3]), sys.argv[4], int(sys.argv[5]))
        os._exit(0)  # the ledger is flushed; skip interpreter teardown, which callgrind would count for nothing
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=20, help="calls counted per case (default 20)")
    parser.add_argument("--no-write", action="store_true", help="print the table without writing bench/INSTRUCTIONS.md")
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is not installed (Debian package valgrind)")
    text = report(measure(args.calls), args.calls)
    if not args.no_write:
        (ROOT / "bench" / "INSTRUCTIONS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
