"""The issued-card ledger, written off the request path.

A hook response must not wait for the database: the request hands the rows to a per-process background writer that
inserts them in batches every `flush_interval`, so that a busy worker commits a few times a second rather than once
per request, and a request never wakes the writer. Nothing is lost on a clean shutdown: `close()` (registered with
atexit, and called from gunicorn's worker_exit hook) drains the queue; a failed batch is retried before it is given
up and logged.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cds_service.storage.bulk_insert import BulkInsert
from cds_service.storage.models import IssuedCard, IssuedSuggestion

log = logging.getLogger("cds_service.ledger")


@dataclass(frozen=True)
class IssuedCardRow:
    card_uuid: str
    card_type: str
    service_id: str
    hook: str
    hook_instance: str
    knowledge_version: str
    patient_hash: str
    issued_at: datetime
    suggestions: tuple[tuple[str, str], ...] = ()   # (suggestion uuid, label)


CARD_COLUMNS = ("card_uuid", "card_type", "service_id", "hook", "hook_instance", "knowledge_version", "patient_hash",
                "issued_at")
SUGGESTION_COLUMNS = ("suggestion_uuid", "card_uuid", "label")


class CardLedger:
    def __init__(self, engine: Engine, *, batch_size: int = 200, flush_interval: float = 0.2) -> None:
        self.engine = engine
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        # One item per request: its rows (small values only, so that nothing of the request outlives it here).
        self._queue: queue.Queue[list[IssuedCardRow]] = queue.Queue()
        self._lock = threading.Lock()
        self._writer: threading.Thread | None = None
        self._pid: int | None = None
        self._stopping = threading.Event()
        self._unwritten = 0  # items recorded and not yet written (or given up), under _written
        self._written = threading.Condition()
        self._insert_cards = BulkInsert(engine, IssuedCard.__table__, CARD_COLUMNS)
        self._insert_suggestions = BulkInsert(engine, IssuedSuggestion.__table__, SUGGESTION_COLUMNS)
        atexit.register(self.close)

    def record(self, rows: list[IssuedCardRow]) -> None:
        """Queue rows for writing (never blocks on the database)."""
        if not rows:
            return
        self._ensure_writer()
        with self._written:
            self._unwritten += 1
        self._queue.put(list(rows))

    def _ensure_writer(self) -> None:
        with self._lock:
            if self._writer is None or self._pid != os.getpid() or not self._writer.is_alive():
                self._pid = os.getpid()  # gunicorn forks after start-up: every worker gets its own writer
                self._stopping.clear()
                self._writer = threading.Thread(target=self._run, name="card-ledger", daemon=True)
                self._writer.start()

    def _run(self) -> None:
        # Wakes on a timer, never on a request: a request's put() has no waiting thread to wake, so the request
        # thread is not made to hand over the GIL, and a busy worker commits a few times a second.
        while not self._stopping.wait(self.flush_interval):
            self._drain(everything=False)

    def _drain(self, *, everything: bool = True) -> None:
        """Write the queued rows. The timer's drain (`everything=False`) writes what was queued when it woke and
        stops: going on while a busy worker keeps queueing made a transaction of one or two requests' rows after
        every full batch, each costing a commit (under load over HTTP, half the transactions and a fifth of the
        writer's CPU). Rows queued meanwhile wait for the next turn; `flush()` writes everything."""
        left = None if everything else self._queue.qsize()
        while left is None or left > 0:
            batch, items = self._take(left)
            if not items:
                return
            if left is not None:
                left -= items
            try:
                if batch:
                    self._insert(batch)
            finally:
                with self._written:
                    self._unwritten -= items
                    self._written.notify_all()

    def _take(self, most_items: int | None = None) -> tuple[list[IssuedCardRow], int]:
        """Up to about `batch_size` queued rows (whole requests, at most `most_items` of them) without waiting, and
        how many items they came from."""
        batch: list[IssuedCardRow] = []
        items = 0
        while len(batch) < self.batch_size and (most_items is None or items < most_items):
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            items += 1
            batch += item
        return batch, items

    def _insert(self, batch: list[IssuedCardRow]) -> None:
        cards = [(row.card_uuid, row.card_type, row.service_id, row.hook, row.hook_instance, row.knowledge_version,
                  row.patient_hash, row.issued_at) for row in batch]
        suggestions = [(uid, row.card_uuid, label[:255]) for row in batch for uid, label in row.suggestions]
        for attempt in range(1, 4):
            try:
                with self.engine.begin() as connection:
                    self._insert_cards.execute(connection, cards)
                    self._insert_suggestions.execute(connection, suggestions)
                return
            except SQLAlchemyError as exc:
                log.warning("ledger write failed", extra={"attempt": attempt, "rows": len(batch),
                                                          "error_type": type(exc).__name__})
                time.sleep(0.2 * attempt)
        log.error("ledger rows given up after retries", extra={"rows": len(batch)})

    def flush(self, timeout: float = 10.0) -> None:
        """Write everything recorded so far: what is queued, now, in the caller's thread; then wait (up to `timeout`)
        for a batch the background writer may be writing (tests, shutdown)."""
        self._drain()
        with self._written:
            self._written.wait_for(lambda: self._unwritten <= 0, timeout=timeout)

    def close(self) -> None:
        """Stop the writer and drain the queue (a clean shutdown loses nothing)."""
        self._stopping.set()
        writer = self._writer
        if writer is not None and writer.is_alive() and writer is not threading.current_thread():
            writer.join(timeout=2)
        self.flush()
