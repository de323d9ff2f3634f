"""The issued-card ledger: every card answered is recorded once, across database outages, crashes and restarts.

The request path writes the call's rows to the spool (storage/spool.py: one line appended to a file in the instance
folder, before the response goes out) and keeps them in memory for the per-process background writer. The writer wakes
every `flush_interval`, closes the spool segment the rows are in and inserts them in batches; once the database has
them the segment is deleted. A request never waits for the database and a busy worker commits a few times a second.

When the database cannot be reached the rows are already on disk: the writer lets go of its in-memory copy (memory
stays bounded), keeps appending to the spool and tries the database again every `retry_interval`; when it answers,
every segment is replayed. A worker killed with SIGKILL leaves its segment unlocked, and any other process (or the
next start) replays it. Inserts ignore a card uuid already stored, so a replay never duplicates a row.

A row the database refuses for its content is set aside (spool/dead-letter.jsonl, a metric, a log line without its
values) and the rest of its batch lands. If the spool cannot be written (disk full, folder read-only or deleted), the
rows go to the database in the request itself; if that fails too, the call is answered 503 and no card was given: an
answered card is a recorded card.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Engine

from cds_service.errors import ServiceUnavailable
from cds_service.metrics import ledger_dead_letters, ledger_replayed, ledger_spool_failure
from cds_service.storage.bulk_insert import BulkInsert
from cds_service.storage.database import is_row_fault, is_unavailable
from cds_service.storage.database_file import DatabaseFile
from cds_service.storage.models import IssuedCard, IssuedSuggestion, SilentCall
from cds_service.storage.spool import Segment, Spool

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
    source: str = "ehr"                              # who called: CALL_SOURCES
    user_hash: str | None = None                     # the user as a keyed hash (report: presentations)
    content_digest: str | None = None                # what the clinician read (report: the same card shown again)
    silent: bool = False                             # a silent knowledge version's card: recorded, never returned


@dataclass(frozen=True)
class SilentCallRow:
    """A call evaluated under the live and a silent knowledge version: the card types each gave (models.SilentCall)."""

    call_uuid: str
    service_id: str
    hook: str
    source: str
    evaluated_at: datetime
    live_version: str
    silent_version: str
    live_card_types: str
    silent_card_types: str


LedgerRow = IssuedCardRow | SilentCallRow


CALL_SOURCES = ("ehr", "sandbox", "simulate")
"""Where a hook call came from: a CDS client over HTTP, the built-in /sandbox page, or `cds-service simulate`. The
report counts only the first unless asked (cards nobody saw in an EHR would count as ignored)."""
CARD_COLUMNS = ("card_uuid", "card_type", "service_id", "hook", "hook_instance", "knowledge_version", "patient_hash",
                "issued_at", "source", "user_hash", "content_digest", "silent")
SILENT_CALL_COLUMNS = tuple(field.name for field in fields(SilentCallRow))
SUGGESTION_COLUMNS = ("suggestion_uuid", "card_uuid", "label")
_LABEL_LENGTH = IssuedSuggestion.__table__.c.label.type.length


def encode(rows: Iterable[LedgerRow]) -> bytes:
    """One spool line: the call's card rows as JSON arrays, a silent call as an object (orjson writes the datetimes as
    RFC 3339)."""
    return orjson.dumps([_encoded(row) for row in rows], option=orjson.OPT_APPEND_NEWLINE)


def _encoded(row: LedgerRow) -> list[Any] | dict[str, Any]:
    if isinstance(row, SilentCallRow):
        return {"silentCall": [getattr(row, name) for name in SILENT_CALL_COLUMNS]}
    return [row.card_uuid, row.card_type, row.service_id, row.hook, row.hook_instance, row.knowledge_version,
            row.patient_hash, row.issued_at, row.suggestions, row.source, row.user_hash, row.content_digest,
            row.silent]


def _decoded_silent_call(values: list[Any]) -> SilentCallRow:
    call_uuid, service_id, hook, source, evaluated, *rest = values
    return SilentCallRow(call_uuid, service_id, hook, source,
                         datetime.fromisoformat(evaluated) if evaluated is not None else evaluated, *rest)


def decode(line: bytes) -> list[LedgerRow]:
    """The rows of a spool line; ValueError for a line that is not one (cut short by a crash, edited by hand)."""
    try:
        # A null stays null: the database, not the spool, decides whether a row is storable (and sets it aside
        # alone, where a refused line would take the call's other rows with it).
        # A line written by an earlier version has fewer fields: nine before the call's source was recorded (its
        # calls came from EHRs), ten before the user and content digest were, twelve before silent cards were.
        return [_decoded_silent_call(item["silentCall"]) if isinstance(item, dict) else _decoded_card(item)
                for item in orjson.loads(line)]
    except (orjson.JSONDecodeError, TypeError, ValueError) as exc:
        raise ValueError(f"not a ledger spool line ({type(exc).__name__})") from None


def _decoded_card(values: list[Any]) -> IssuedCardRow:
    uid, card_type, service_id, hook, hook_instance, version, patient, issued, suggestions, *later = values
    return IssuedCardRow(uid, card_type, service_id, hook, hook_instance, version, patient,
                         datetime.fromisoformat(issued) if issued is not None else issued,
                         tuple((suggestion, label) for suggestion, label in suggestions), *later)


class CardLedger:
    def __init__(self, engine: Engine, spool: Spool, *, max_spool_bytes: int = 256 * 1024 * 1024,
                 batch_size: int = 500, flush_interval: float = 0.2, retry_interval: float = 1.0,
                 orphan_scan_interval: float = 5.0, database_file: DatabaseFile | None = None) -> None:
        self.engine = engine
        self.spool = spool
        self.max_spool_bytes = max_spool_bytes
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.retry_interval = retry_interval
        self.orphan_scan_interval = orphan_scan_interval
        self.database_file = database_file or DatabaseFile(engine)
        self._lock = threading.Lock()          # record() against the writer's rotation: a segment holds _pending
        self._write_lock = threading.Lock()    # one writer turn at a time (the thread, flush(), close())
        self._pending: list[list[LedgerRow]] = []
        self._writer: threading.Thread | None = None
        self._pid: int | None = None
        self._stopping = threading.Event()
        self._backlog = False                  # the database failed: the spool holds rows memory no longer does
        self._retry_at = 0.0
        self._scan_at = 0.0
        self._spool_bytes = 0                  # last measured size of every segment (the writer measures it)
        self._database_problem: str | None = None
        self._insert_cards = BulkInsert(engine, IssuedCard.__table__, CARD_COLUMNS, ignore_conflicts=True)
        self._insert_suggestions = BulkInsert(engine, IssuedSuggestion.__table__, SUGGESTION_COLUMNS,
                                              ignore_conflicts=True)
        self._insert_silent_calls = BulkInsert(engine, SilentCall.__table__, SILENT_CALL_COLUMNS,
                                               ignore_conflicts=True)
        atexit.register(self.close)

    # -- the request path -------------------------------------------------------------------------------------

    def record(self, rows: list[LedgerRow]) -> None:
        """Make the rows durable before the response goes out (never waits for the database while the spool takes
        them). Raises ServiceUnavailable when they can be recorded nowhere: the caller must not answer the cards."""
        if not rows:
            return
        line = encode(rows)
        with self._lock:
            self._ensure_writer()
            if self._spool_bytes + self.spool.current_size < self.max_spool_bytes:
                try:
                    self.spool.append(line)
                except OSError as exc:
                    log.error("ledger spool cannot be written", extra={"error_type": type(exc).__name__,
                                                                       "errno": exc.errno})
                else:
                    self._pending.append(rows)
                    return
            ledger_spool_failure()
        # The spool is full or cannot be written: the database, now, in this request, or no cards at all.
        if not self._store(rows):
            raise ServiceUnavailable("The service cannot record the cards it would answer with (its spool and its "
                                     "database are unavailable); no cards were given. Try again shortly.")

    def _ensure_writer(self) -> None:
        if self._writer is None or self._pid != os.getpid() or not self._writer.is_alive():
            self._pid = os.getpid()  # gunicorn forks after start-up: every worker gets its own writer
            self._stopping.clear()
            self._pending = []
            self._writer = threading.Thread(target=self._run, name="card-ledger", daemon=True)
            self._writer.start()

    def start(self) -> None:
        """Start this process's writer now (a gunicorn worker, after the fork), so that orphaned segments are replayed
        even before the first call."""
        with self._lock:
            self._ensure_writer()

    # -- the writer -------------------------------------------------------------------------------------------

    def _run(self) -> None:
        # Wakes on a timer, never on a request: a request's append has no waiting thread to wake, so the request
        # thread is not made to hand over the GIL, and a busy worker commits a few times a second.
        while not self._stopping.wait(self.flush_interval):
            try:
                self._turn()
            except Exception:  # the writer must outlive anything one turn meets; the rows stay in the spool
                log.exception("ledger writer turn failed")
                self._backlog = True
                self._retry_at = time.monotonic() + self.retry_interval

    def _turn(self, *, final: bool = False) -> None:
        """One turn: write what was recorded since the last one, or, after a failure, retry from the spool; every
        `orphan_scan_interval`, replay what other processes left."""
        with self._write_lock:
            now = time.monotonic()
            if self.database_file.replaced():  # checked every turn, so the file is back even when no cards flow
                self._recreate_database_file()
            if self._backlog:
                with self._lock:
                    self._pending = []  # their lines are in the spool, which a replay reads
                if not final and now < self._retry_at:
                    return
                # Earlier segments first; this process's own segment keeps growing (one file, not one a turn) until
                # the database answers again.
                if self._replay_all():
                    with self._lock:
                        segment = self.spool.rotate()
                        self._pending = []
                    if segment is not None:
                        segment.release()
                        self._replay_all()
                return
            with self._lock:
                segment = self.spool.rotate()
                items, self._pending = self._pending, []
            if segment is not None:
                self._write_segment(segment, items)
            if not self._backlog and (final or now >= self._scan_at):
                self._scan_at = now + self.orphan_scan_interval
                self._replay_all()

    def _write_segment(self, segment: Segment, items: list[list[LedgerRow]]) -> None:
        rows = [row for item in items for row in item]
        if all(self._store(batch) for batch in _batches(rows, self.batch_size)):
            segment.discard()
            return
        if segment.lost():  # its file was deleted (instance folder removed): memory holds the only copy
            self._respool(items)
        segment.release()
        self._enter_backlog()

    def _respool(self, items: list[list[LedgerRow]]) -> None:
        with self._lock:
            for item in items:
                try:
                    self.spool.append(encode(item))
                except OSError:
                    ledger_spool_failure()
                    log.error("ledger rows lost: neither the database nor the spool takes them",
                              extra={"rows": len(item)})

    def _enter_backlog(self) -> None:
        self._backlog = True
        self._retry_at = time.monotonic() + self.retry_interval

    def _replay_all(self) -> bool:
        """Write every segment no process holds; leaves backlog mode once all of them are in the database."""
        for segment in self.spool.orphans():
            if not self._replay(segment):
                segment.release()
                self._enter_backlog()
                self._measure_spool()
                return False
            segment.discard()
        self._backlog = False
        self._measure_spool()
        return True

    def _measure_spool(self) -> None:
        """Bytes in the spool besides this process's open segment (whose size record() adds itself)."""
        self._spool_bytes = max(0, self.spool.bytes_on_disk() - self.spool.current_size)

    def _replay(self, segment: Segment) -> bool:
        batch: list[LedgerRow] = []
        replayed = 0
        for line in segment.lines():
            try:
                batch += decode(line)
            except ValueError as exc:
                self._set_aside(line, str(exc))
                continue
            if len(batch) >= self.batch_size:
                if not self._store(batch):
                    return False
                replayed += len(batch)
                batch = []
        if batch and not self._store(batch):
            return False
        replayed += len(batch)
        if replayed:
            ledger_replayed(replayed)
            log.info("ledger spool replayed", extra={"rows": replayed})
        return True

    def _store(self, rows: list[LedgerRow]) -> bool:
        """Insert the rows; False when the database is unavailable (they must stay in the spool). A row refused for
        its content is set aside and the others are written one by one."""
        try:
            self._insert(rows)
        except Exception as exc:
            if not is_row_fault(exc):
                self._unavailable(exc)
                return False
            for row in rows:
                try:
                    self._insert([row])
                except Exception as row_exc:
                    if not is_row_fault(row_exc):
                        self._unavailable(row_exc)
                        return False
                    self._set_aside(encode([row]), type(row_exc).__name__)
        if self.database_file.replaced():
            # The commit may have gone to a deleted file: make a new one, and let the spool give it these rows again.
            self._recreate_database_file()
            return False
        self._database_problem = None
        return True

    def _recreate_database_file(self) -> None:
        log.error("database file was deleted or replaced; recreating it")
        self._database_problem = "database file was deleted or replaced"
        try:
            self.database_file.recreate()
        except Exception as exc:  # the next turn tries again; readiness says why meanwhile
            log.error("database file cannot be recreated", extra={"error_type": type(exc).__name__})

    def _unavailable(self, exc: BaseException) -> None:
        self._database_problem = "database unreachable" if is_unavailable(exc) else \
            f"database refused the ledger's writes ({type(exc).__name__})"
        log.warning("ledger write failed; rows kept in the spool", extra={"error_type": type(exc).__name__})

    def _set_aside(self, line: bytes, reason: str) -> None:
        ledger_dead_letters(1)
        log.error("ledger row set aside (dead letter)", extra={"reason": reason})
        try:
            self.spool.dead_letter(orjson.dumps({"reason": reason, "line": line.decode("utf-8", "replace")}))
        except OSError as exc:
            log.error("dead letter cannot be written", extra={"error_type": type(exc).__name__})

    def _insert(self, batch: list[LedgerRow]) -> None:
        card_rows = [row for row in batch if isinstance(row, IssuedCardRow)]
        cards = [(row.card_uuid, row.card_type, row.service_id, row.hook, row.hook_instance, row.knowledge_version,
                  row.patient_hash, row.issued_at, row.source, row.user_hash, row.content_digest, row.silent)
                 for row in card_rows]
        suggestions = [(uid, row.card_uuid, label[:_LABEL_LENGTH]) for row in card_rows
                       for uid, label in row.suggestions]
        calls = [tuple(getattr(row, name) for name in SILENT_CALL_COLUMNS) for row in batch
                 if isinstance(row, SilentCallRow)]
        with self.engine.begin() as connection:
            self._insert_cards.execute(connection, cards)
            self._insert_suggestions.execute(connection, suggestions)
            if calls:
                self._insert_silent_calls.execute(connection, calls)

    # -- operations -------------------------------------------------------------------------------------------

    def flush(self) -> None:
        """Write everything recorded so far, in the caller's thread (tests, shutdown); what the database does not
        take stays in the spool."""
        self._turn(final=True)

    def replay(self) -> None:
        """Write what earlier processes left in the spool (at start-up, before the workers fork)."""
        with self._write_lock:
            self._replay_all()

    def close(self) -> None:
        """Stop the writer and write what is recorded; what the database cannot take now stays in the spool for the
        next start (SIGTERM, atexit)."""
        self._stopping.set()
        writer = self._writer
        if writer is not None and writer.is_alive() and writer is not threading.current_thread():
            writer.join(timeout=5)
        if self._pid == os.getpid():
            try:
                self._turn(final=True)
            except Exception:  # at exit: what is not written is in the spool, for the next start
                log.exception("ledger could not write its last rows; they stay in the spool")

    def problem(self) -> str | None:
        """Why cards cannot be recorded now (None when they can): for /readyz."""
        spool_problem = self.spool.problem()
        if spool_problem is not None:
            return spool_problem
        if self._spool_bytes + self.spool.current_size >= self.max_spool_bytes:
            return "ledger spool is full (CDS_SPOOL_MAX_BYTES)"
        if self.database_file.replaced():
            return "database file was deleted or replaced"
        return None

    def status(self) -> dict[str, Any]:
        """What an operator reads on /readyz: the spool's size and whether the writer is catching up."""
        return {"spoolBytes": self._spool_bytes + self.spool.current_size, "backlog": self._backlog,
                "lastWriteProblem": self._database_problem}


def _batches(rows: list[LedgerRow], size: int) -> Iterator[list[LedgerRow]]:
    for start in range(0, len(rows), size):
        yield rows[start:start + size]
