"""`python bench/ledger.py`: what the durable ledger costs a hook call, against the in-memory ledger it replaced, in
one run.

The durable ledger (cds_service/storage/ledger.py) appends each call's rows to a spool file before the response goes
out; the ledger before it (kept here as `MemoryLedger`, from commit b95e4d8) only queued them in memory, and lost them
when the database was away or the process died. Both are timed in the same process on the same calls:
1. `record()` alone, for the two cards of a typical call;
2. a whole patient-view call with 100 resources (request bytes to response bytes, as bench/run.py measures it), the
   app's ledger swapped between the two.
Best of several rounds, medians within each; prints a table and writes bench/LEDGER.md.
"""

from __future__ import annotations

import argparse
import logging
import queue
import statistics
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run import bench_app, service_call, settle  # noqa: E402
from cds_service.storage.bulk_insert import BulkInsert  # noqa: E402
from cds_service.storage.ledger import CARD_COLUMNS, SUGGESTION_COLUMNS, CardLedger, IssuedCardRow  # noqa: E402
from cds_service.storage.models import IssuedCard, IssuedSuggestion  # noqa: E402


class MemoryLedger:
    """The ledger before the spool (b95e4d8), reduced to its request-path behaviour: rows queued in memory, a timer
    thread inserting them in batches."""

    def __init__(self, engine: Any, flush_interval: float = 0.2) -> None:
        self.engine = engine
        self.flush_interval = flush_interval
        self._queue: queue.Queue[list[IssuedCardRow]] = queue.Queue()
        self._stop = threading.Event()
        self._cards = BulkInsert(engine, IssuedCard.__table__, CARD_COLUMNS, ignore_conflicts=False)
        self._suggestions = BulkInsert(engine, IssuedSuggestion.__table__, SUGGESTION_COLUMNS)
        self._writer = threading.Thread(target=self._run, daemon=True)
        self._writer.start()

    def record(self, rows: list[IssuedCardRow]) -> None:
        if rows:
            self._queue.put(list(rows))

    def _run(self) -> None:
        while not self._stop.wait(self.flush_interval):
            self.flush()

    def flush(self) -> None:
        batch: list[IssuedCardRow] = []
        while True:
            try:
                batch += self._queue.get_nowait()
            except queue.Empty:
                break
        if batch:
            with self.engine.begin() as connection:
                self._cards.execute(connection, [(r.card_uuid, r.card_type, r.service_id, r.hook, r.hook_instance,
                                                  r.knowledge_version, r.patient_hash, r.issued_at) for r in batch])
                self._suggestions.execute(connection, [(u, r.card_uuid, label) for r in batch
                                                       for u, label in r.suggestions])

    def close(self) -> None:
        self._stop.set()
        self._writer.join()
        self.flush()


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    app = bench_app()
    engine = app.extensions["cds.database"]
    durable: CardLedger = app.extensions["cds.ledger"]
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
            app.extensions["cds.ledger"] = ledger
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
    if not args.no_write:
        (ROOT / "bench" / "LEDGER.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
