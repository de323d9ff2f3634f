"""`evaluate(record, now, thresholds) -> Evaluation`: the one entry point of the clinical core.

Pure: the clock is a parameter and nothing here performs I/O, so tests pin `now` and the same record always gives the
same findings.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from cds_service.clinical.facts import Facts, derive_facts, read_from
from cds_service.clinical.knowledge import Thresholds, suggestion_catalogue
from cds_service.clinical.medications import prepare_ingredient_patterns
from cds_service.clinical.model import Finding
from cds_service.clinical.orders import OrderItem, evaluate_order_rules
from cds_service.clinical.rules import evaluate_rules
from cds_service.fhir.record import PatientRecord
from cds_service.terminology.valuesets import prepare_lookup


# Built for every request: not frozen, __init__ written out (why: above ConditionEntry in fhir/record.py).
@dataclass
class Evaluation:
    """The findings, in card order, and the facts they were derived from (a trace for review)."""

    findings: tuple[Finding, ...]
    facts: Facts

    def __init__(self, findings: tuple[Finding, ...], facts: Facts) -> None:
        self.findings = findings
        self.facts = facts

    @property
    def card_types(self) -> tuple[str, ...]:
        return tuple(finding.card_type for finding in self.findings)

    def finding(self, card_type: str) -> Finding | None:
        return next((f for f in self.findings if f.card_type == card_type), None)


def prepare() -> None:
    """Build now what the core would otherwise build on first use: the value sets' lookup index, the medication
    ingredient patterns, the suggestion catalogue. The app calls this at start-up, before gunicorn forks its
    workers, so that no worker's first hook call pays for it (bench/DECISIONS.md)."""
    prepare_lookup()
    prepare_ingredient_patterns()
    suggestion_catalogue()
    read_from("Condition")
    read_from("Observation")


def evaluate_orders(record: PatientRecord, orders: Iterable[OrderItem], now: datetime,
                    thresholds: Thresholds) -> Evaluation:
    """Evaluate draft orders (order-select / order-sign) against rules O1-O5, with red-flag pre-emption."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    facts = derive_facts(record, now, thresholds)
    return Evaluation(tuple(evaluate_order_rules(facts, orders)), facts)


def evaluate(record: PatientRecord, now: datetime, thresholds: Thresholds) -> Evaluation:
    """Evaluate the record at `now` (an aware UTC datetime) against rules R1-R11."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    facts = derive_facts(record, now, thresholds)
    return Evaluation(tuple(evaluate_rules(facts)), facts)
