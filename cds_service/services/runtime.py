"""What a service needs besides the request: the clock, the thresholds in force and the card renderer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cds_service.clinical.knowledge import Thresholds
from cds_service.fhir.client import FetchPolicy, FhirClient
from cds_service.render.cards import CardRenderer


@dataclass(frozen=True)
class Runtime:
    now: datetime
    thresholds: Thresholds
    renderer: CardRenderer
    fhir_client: FhirClient | None
    fetch_policy: FetchPolicy
    max_draft_orders: int = 100
