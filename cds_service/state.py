"""What one application instance holds, in one typed object: `state(app)` (kept in `app.extensions["cds"]`).

Built once by create_app, before gunicorn forks its workers. `clock` is the one field tests replace (to pin the time
of a call); the rest is read-only after start-up by convention.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Flask, current_app

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from cds_service.clinical.knowledge import Thresholds
    from cds_service.config import Settings
    from cds_service.cpu_slot import CpuSlot
    from cds_service.fhir.client import FetchPolicy, FhirClient
    from cds_service.memory import WorkerMemory
    from cds_service.render.cards import CardRenderer
    from cds_service.security.verify import TokenVerifier
    from cds_service.services import ServiceRegistry
    from cds_service.services.order_reuse import OrderEvaluations
    from cds_service.silent import SilentKnowledge
    from cds_service.storage.ledger import CardLedger


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class ServiceState:
    settings: Settings
    thresholds: Thresholds
    value_sets: Mapping[str, Any]
    renderer: CardRenderer
    cpu_slot: CpuSlot
    worker_memory: WorkerMemory
    fhir_client: FhirClient
    fetch_policy: FetchPolicy
    services: ServiceRegistry
    database: Engine
    ledger: CardLedger
    patient_hasher: Callable[[str], str]
    knowledge_version: str
    verifier: TokenVerifier
    silent: SilentKnowledge | None = None
    order_evaluations: OrderEvaluations | None = None
    clock: Callable[[], datetime] = utc_now


def state(app: Flask | None = None) -> ServiceState:
    """The instance's state (the current app's by default)."""
    return (app or current_app).extensions["cds"]
