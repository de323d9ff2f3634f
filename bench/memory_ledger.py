"""The card ledger as it was before the spool (commit b95e4d8), kept as the benchmark's baseline: rows queued in memory
and inserted by a timer thread in batches; lost when the database is away or the process dies."""

from __future__ import annotations

import os
import queue
import threading
from typing import Any

from cds_service.storage.bulk_insert import BulkInsert
from cds_service.storage.ledger import CARD_COLUMNS, SUGGESTION_COLUMNS, IssuedCardRow
from cds_service.storage.models import IssuedCard, IssuedSuggestion


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
        self._writer: threading.Thread | None = None
        self._pid = 0

    def record(self, rows: list[IssuedCardRow]) -> None:
        if rows:
            if self._pid != os.getpid():  # started in each gunicorn worker, as the old ledger did
                self._pid = os.getpid()
                self._writer = threading.Thread(target=self._run, daemon=True)
                self._writer.start()
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

    def start(self) -> None:
        """Nothing to replay: it keeps nothing on disk."""

    def close(self) -> None:
        self._stop.set()
        if self._writer is not None and self._pid == os.getpid():
            self._writer.join()
        self.flush()
