"""order-select's evaluation kept briefly so that order-sign, moments later, need not read and evaluate it all again.

A clinician selects orders (order-select), then signs them (order-sign): when the sign call carries the same draft
orders, the same prefetch and comes from the same client about the same patient and user, the findings are the
ones order-select found, and the costly part of the call (reading the patient's record from the FHIR server,
building it, deriving facts) can be skipped. Only the findings are kept, never the patient's data: the sign call
renders them afresh (new card uuids, its own time), so its cards are its own in the ledger and in feedback.

What is reused is exactly what would be computed again: the key is a digest of everything the evaluation read
(the client, the FHIR server, patient, user, the knowledge version, the day, the draft orders and which of them were
evaluated, the prefetch), so any change gives a fresh evaluation. An evaluation with unavailable data is never kept:
the sign call tries again. The cache is per worker process, bounded in entries and in age
(CDS_ORDER_REUSE_SECONDS, CDS_ORDER_REUSE_ENTRIES); a sign call landing on another worker simply evaluates afresh.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from cachetools import TTLCache

from cds_service.clinical.model import Finding


@dataclass(frozen=True)
class OrderEvaluation:
    """What order-sign needs to answer without evaluating again: the findings, in response order."""

    findings: tuple[Finding, ...]


class OrderEvaluations:
    """Recent order-select evaluations of one worker, by digest of their inputs (thread-safe, bounded)."""

    def __init__(self, max_age_seconds: float, max_entries: int, knowledge_version: str,
                 clock: Callable[[], float] | None = None) -> None:
        self._knowledge_version = knowledge_version
        self._lock = threading.Lock()
        if clock is None:
            self._entries: TTLCache[bytes, OrderEvaluation] = TTLCache(max_entries, max_age_seconds)
        else:
            self._entries = TTLCache(max_entries, max_age_seconds, timer=clock)

    def key(self, *, caller: str, fhir_server: str | None, patient_id: str, user_id: str, now: datetime,
            draft_orders: Any, evaluated: list[str], prefetch: Any) -> bytes | None:
        """The digest of every input of an order evaluation (no patient data is kept: only this digest); None for
        inputs that cannot be serialised canonically (then nothing is reused)."""
        try:
            content = orjson.dumps([draft_orders, evaluated, prefetch], option=orjson.OPT_SORT_KEYS)
        except (TypeError, orjson.JSONEncodeError):
            return None
        digest = hashlib.blake2b(digest_size=32)
        for part in (caller, fhir_server or "", patient_id, user_id, self._knowledge_version, now.date().isoformat()):
            digest.update(part.encode())
            digest.update(b"\x00")
        digest.update(content)
        return digest.digest()

    def get(self, key: bytes) -> OrderEvaluation | None:
        with self._lock:
            return self._entries.get(key)

    def put(self, key: bytes, evaluation: OrderEvaluation) -> None:
        with self._lock:
            self._entries[key] = evaluation

    def __len__(self) -> int:
        with self._lock:
            self._entries.expire()
            return len(self._entries)
