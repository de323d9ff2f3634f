"""Prometheus metrics (GET /metrics). No patient data in any label: routes, service ids, card types, categories.

Under gunicorn each worker is a process: `cds-service serve` sets PROMETHEUS_MULTIPROC_DIR (a fresh folder) before the
app is imported, prometheus-client then keeps values in files there, and /metrics adds up every worker's values.
"""

from __future__ import annotations

import os
from functools import cache

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest, multiprocess

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUEST_DURATION = Histogram("cds_request_duration_seconds", "HTTP request duration by route, service and status",
                             ["route", "service", "status"], buckets=_LATENCY_BUCKETS)
CARDS_ISSUED = Counter("cds_cards_issued_total", "Cards returned, by card type", ["card_type"])
PREFETCH_KEYS = Counter("cds_prefetch_keys_total", "Prefetch keys by how their data came: prefetched, empty (null), "
                        "backfilled from the FHIR server, or unavailable", ["outcome"])
# Labelled once: `labels()` costs as much again as the write it leads to (a few microseconds in multiprocess mode).
_PREFETCH_OUTCOMES = {outcome: PREFETCH_KEYS.labels(outcome=outcome)
                      for outcome in ("prefetched", "empty", "backfilled", "unavailable")}
BACKFILL_DURATION = Histogram("cds_backfill_duration_seconds", "Time spent reading from the FHIR server per hook call",
                              buckets=_LATENCY_BUCKETS)
BACKFILL_FAILURES = Counter("cds_backfill_failures_total", "FHIR-server reads that failed, by reason category",
                            ["reason"])
PRECONDITION_FAILED = Counter("cds_precondition_failed_total", "Hook calls answered 412 (required data missing)")
FOREIGN_RESOURCES = Counter("cds_foreign_resources_total", "Resources not evaluated because they belong to another "
                            "patient than the hook's context (Patient: a mismatched Patient, answered 412), by "
                            "resource type", ["resource_type"])
DEPENDENCY_UNAVAILABLE = Counter("cds_dependency_unavailable_total", "Calls answered 503 because a dependency "
                                 "could not be reached, by dependency", ["dependency"])
LEDGER_DEAD_LETTERS = Counter("cds_ledger_dead_letter_rows_total", "Ledger rows the database refused for their "
                              "content (or spool lines that could not be read), set aside in spool/dead-letter.jsonl")
LEDGER_REPLAYED = Counter("cds_ledger_replayed_rows_total", "Ledger rows written to the database from the spool "
                          "after a database outage, a crash or a restart")
SILENT_EVALUATIONS = Counter("cds_silent_evaluations_total", "Calls evaluated again under the silent knowledge "
                             "version (CDS_SILENT_KNOWLEDGE), by outcome: recorded, or failed (the live answer is "
                             "never affected)", ["outcome"])
WORKER_REPLACEMENTS = Counter("cds_worker_replacements_total", "Workers replaced because large calls left them more "
                              "than CDS_WORKER_MEMORY_HEADROOM_MB larger than between large calls")
LEDGER_SPOOL_FAILURES = Counter("cds_ledger_spool_failures_total", "Hook calls whose cards could not be appended to "
                                "the ledger spool (full, or not writable): written to the database directly, or "
                                "answered 503")
FEEDBACK = Counter("cds_feedback_total", "Feedback items stored (re-sent ones once), by card type ('unknown': a card "
                   "the ledger does not hold) and outcome (accepted, overridden)", ["card_type", "outcome"])
AUTH_FAILURES = Counter("cds_auth_failures_total", "Client JWTs refused, by reason category", ["reason"])
ORDER_EVALUATIONS = Counter("cds_order_evaluations_total", "Order-workflow calls by hook and whether a recent "
                            "evaluation of the same inputs was reused (reused) or the call was evaluated (fresh)",
                            ["hook", "outcome"])
DEPRECATED_SERVICE_IDS = Counter("cds_deprecated_service_id_calls_total", "Calls to a service id kept only for a "
                                 "deprecation period (see README), by id", ["service"])

def count_prefetch_keys(outcome: str, keys: int) -> None:
    """Add `keys` prefetch keys to an outcome's count; a zero is not written (every write costs microseconds)."""
    if keys:
        _PREFETCH_OUTCOMES[outcome].inc(keys)


@cache
def _cards_of_type(card_type: str) -> Counter:
    return CARDS_ISSUED.labels(card_type=card_type)  # card types are the catalogue's: a small, fixed set


def count_card(card_type: str) -> None:
    """One more card of this type issued."""
    _cards_of_type(card_type).inc()


@cache
def request_duration(route: str, service: str, status: int) -> Histogram:
    """The duration histogram of one route, service and status. Remembered: `labels()` costs twice the observation,
    and the combinations are few (the app's routes, the declared services, the statuses it answers with)."""
    return REQUEST_DURATION.labels(route=route, service=service, status=str(status))


# The resource types a hook call reads (prefetch templates and draft orders); any other type is counted as "other".
_READ_TYPES = frozenset({"Patient", "Condition", "Procedure", "Observation", "MedicationRequest", "MedicationStatement",
                         "ServiceRequest", "DiagnosticReport", "ImagingStudy"})


def count_foreign(resource_types: list[str]) -> None:
    """Resources dropped as another patient's, by type (an unread type is labelled "other")."""
    for kind in resource_types:
        FOREIGN_RESOURCES.labels(resource_type=kind if kind in _READ_TYPES else "other").inc()


def dependency_unavailable(dependency: str) -> None:
    DEPENDENCY_UNAVAILABLE.labels(dependency=dependency).inc()


def ledger_dead_letters(rows: int) -> None:
    LEDGER_DEAD_LETTERS.inc(rows)


def ledger_replayed(rows: int) -> None:
    LEDGER_REPLAYED.inc(rows)


def ledger_spool_failure() -> None:
    LEDGER_SPOOL_FAILURES.inc()


def count_order_evaluation(hook: str, outcome: str) -> None:
    """One more order-workflow call, evaluated afresh or answered from a recent evaluation of the same inputs."""
    ORDER_EVALUATIONS.labels(hook=hook, outcome=outcome).inc()


def count_deprecated_service_id(service_id: str) -> None:
    DEPRECATED_SERVICE_IDS.labels(service=service_id).inc()


def count_feedback(card_type: str, outcome: str) -> None:
    """One more feedback item of this outcome for a card of this type (both validated, so the labels stay few)."""
    FEEDBACK.labels(card_type=card_type, outcome=outcome).inc()


AUTH_CATEGORIES = frozenset({"missing", "malformed", "algorithm", "issuer", "key", "lifetime", "expired", "audience",
                             "replay", "tenant", "claims"})


def auth_failure(category: str) -> None:
    """One more client JWT refused, by the category its refusal carries (errors.AuthenticationFailed)."""
    AUTH_FAILURES.labels(reason=category if category in AUTH_CATEGORIES else "claims").inc()


def fetch_failure(reason: str) -> None:
    """One more failed read, labelled by the failure's own category (fhir.client.Failure), never by its sentence."""
    BACKFILL_FAILURES.labels(reason=getattr(reason, "category", "other")).inc()


def exposition() -> tuple[bytes, str]:
    """The metrics in Prometheus text format: every worker's, in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(), CONTENT_TYPE_LATEST
