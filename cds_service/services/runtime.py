"""What a service needs besides the request: the clock, the thresholds in force and the card renderer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cds_service.clinical.knowledge import Thresholds
from cds_service.fhir.client import FetchPolicy, FhirClient
from cds_service.render.app_link import AppLink
from cds_service.render.cards import CardRenderer

if TYPE_CHECKING:
    from cds_service.services.order_reuse import OrderEvaluations


@dataclass(frozen=True)
class Runtime:
    now: datetime
    thresholds: Thresholds
    renderer: CardRenderer
    fhir_client: FhirClient | None
    fetch_policy: FetchPolicy
    max_draft_orders: int = 100
    rerun: Rerun | None = None
    order_evaluations: OrderEvaluations | None = None
    app_link: AppLink | None = None
    """How the cards link to the evidence app (cds_service/render/app_link.py); no link without it."""
    caller: str = ""
    """Who called (the JWT's issuer and tenant): part of what makes two calls the same for order_evaluations."""


class Rerun:
    """What a service leaves behind for a silent knowledge version (cds_service/silent.py): how to evaluate this call
    again under other knowledge, from the data it already read (no second read of the FHIR server)."""

    def __init__(self) -> None:
        self.evaluate: Callable[[Runtime], list[dict[str, Any]]] | None = None
