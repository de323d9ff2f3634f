"""`python bench/ledger.py`: what the durable ledger costs a hook call, against the in-memory ledger it replaced, in
one run.

The durable ledger (cds_service/storage/ledger.py) appends each call's rows to a spool file before the response goes
out; the ledger before it (kept here as `MemoryLedger`, from commit b95e4d8) only queued them in memory, and lost them
when the database was away or the process died. Both are timed in the same process on the same calls:
1. `record()` alone, for the two cards of a typical call;
2. a whole patient-view call with 100 resources (request bytes to response bytes, as bench/run.py measures it), the
   app's ledger swapped between the two.
3. over HTTP (`--http`): gunicorn, 2 workers, `wrk` at 8 connections on `GET /healthz` and on patient-view with 100
   resources, for the set-up before this work (sync workers, in-memory ledger), gthread workers with the in-memory
   ledger, and the set-up now (gthread workers, durable ledger), each started in turn (bench/serve.py).
Best of several rounds, medians within each; prints a table and writes bench/LEDGER.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.memory_ledger import MemoryLedger  # noqa: E402
from bench.run import (  # noqa: E402
    _free_port,
    _workers_cpu_seconds,
    _wrk,
    bench_app,
    service_call,
    settle,
    wait_for_port,
)
from cds_service.state import state  # noqa: E402
from cds_service.storage.ledger import CardLedger, IssuedCardRow  # noqa: E402


def _rows() -> list[IssuedCardRow]:
    now = datetime.now(UTC)
    return [IssuedCardRow(str(uuid.uuid4()), kind, "fbss-miss-advisor", "patient-view", str(uuid.uuid4()), "k1",
                          "h" * 64, now, ((str(uuid.uuid4()), "Order MRI lumbar spine with and without contrast"),))
            for kind in ("fbss-imaging", "revision-referral")]


def _median_us(function: Any, n: int) -> float:
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        function()
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


VARIANTS = (("sync", "memory", "before: sync workers, in-memory ledger"),
            ("sync", "durable", "sync workers, durable ledger"),
            ("gthread", "memory", "gthread workers, in-memory ledger"),
            ("gthread", "durable", "now: gthread workers, durable ledger"))


def over_http(seconds: int, rounds: int) -> list[dict]:
    """Each set-up's best round (highest requests/s; its p50, p99 and CPU with it). Rounds go over the set-ups in
    turn, so a slow spell of the shared host spoils one round of each rather than every round of one."""
    best: dict[tuple[str, str], dict] = {}
    for _ in range(rounds):
        for row in _one_round(seconds):
            key = (row["variant"], row["endpoint"])
            if key not in best or row["rps"] > best[key]["rps"]:
                best[key] = row
    return list(best.values())


def _one_round(seconds: int) -> list[dict]:
    from bench.run import _body  # noqa: PLC0415

    rows = []
    for worker_class, ledger, label in VARIANTS:
        instance = tempfile.mkdtemp(prefix="cds-bench-ledger-")
        body = Path(instance, "body.json")
        body.write_bytes(_body(100, "patient-view"))
        port = _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        env["CDS_INSTANCE_PATH"] = instance
        server = subprocess.Popen([sys.executable, str(ROOT / "bench" / "serve.py"), str(port), worker_class, ledger],
                                  env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for_port(port)
            _wrk(f"{base}/cds-services/fbss-miss-advisor", 8, 3, str(body))  # warm-up
            for name, url, data in (("GET /healthz", f"{base}/healthz", None),
                                    ("patient-view, 100 resources", f"{base}/cds-services/fbss-miss-advisor",
                                     str(body))):
                cpu_before = _workers_cpu_seconds(server.pid)
                result = _wrk(url, 8, seconds, data)
                cpu_ms = (_workers_cpu_seconds(server.pid) - cpu_before) * 1000 / max(result["requests"], 1)
                rows.append({"variant": label, "endpoint": name, "cpu_ms": cpu_ms, **result})
        finally:
            server.terminate()
            server.wait(timeout=60)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--http", action="store_true", help="also over HTTP, with wrk")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per measurement")
    parser.add_argument("--http-rounds", type=int, default=3, help="rounds over the HTTP set-ups")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    app = bench_app()
    engine = state(app).database
    durable: CardLedger = state(app).ledger
    memory = MemoryLedger(engine)
    _, call = service_call(app, "patient-view", 100)
    for _ in range(30):
        call()
    settle(app)
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        for name, ledger in (("memory", memory), ("durable", durable)):
            rows = [_rows() for _ in range(args.calls)]
            record_us = _median_us(lambda ledger=ledger, rows=rows: ledger.record(rows.pop()), args.calls)
            state(app).ledger = ledger
            call_us = _median_us(call, args.calls)
            best[f"{name}-record"] = min(best.get(f"{name}-record", record_us), record_us)
            best[f"{name}-call"] = min(best.get(f"{name}-call", call_us), call_us)
            ledger.flush()
    memory.close()
    durable.close()
    text = "\n".join([
        "# The durable ledger's cost per call", "",
        f"Run {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')} with `python bench/ledger.py` (best of "
        f"{args.rounds} rounds, median of {args.calls} calls each; SQLite, the defaults). `memory` is the ledger "
        "before the spool (b95e4d8: rows queued in memory only); `durable` appends each call's rows to the spool "
        "file first.", "",
        "| measured | memory µs | durable µs | ratio |", "|---|---|---|---|",
        f"| `record()` of a call's 2 cards | {best['memory-record']:.1f} | {best['durable-record']:.1f} | "
        f"{best['durable-record'] / best['memory-record']:.1f}x |",
        f"| patient-view call, 100 resources | {best['memory-call']:.0f} | {best['durable-call']:.0f} | "
        f"{best['durable-call'] / best['memory-call']:.3f}x |", ""])
    if args.http and shutil.which("wrk"):
        http_rows = over_http(args.seconds, args.http_rounds)
        text += "\n".join([
            "", f"## Over HTTP: gunicorn, 2 workers, 127.0.0.1, wrk 8 connections, {args.seconds} s each, best of "
            f"{args.http_rounds} rounds", "",
            "| set-up | endpoint | requests/s | p50 ms | p99 ms | errors | worker CPU ms per request |",
            "|---|---|---|---|---|---|---|",
            *(f"| {r['variant']} | {r['endpoint']} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | "
              f"{r['errors']} | {r['cpu_ms']:.2f} |" for r in http_rows), ""])
    if not args.no_write:
        (ROOT / "bench" / "LEDGER.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
