"""The context of each hook the service answers, as published in the HL7 CDS Hooks Library.

Hook versions patient-view 1.0, order-select 1.0.2, order-sign 1.1.0. Each field says whether it is required, what
shape it has, and whether it may be used as a prefetch token (`{{context.<name>}}`).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class Shape(Enum):
    """What a context field holds; checked when a request arrives."""

    REFERENCE = "a 'Type/id' reference string"
    ID = "a FHIR id string"
    REFERENCES = "an array of 'Type/id' reference strings"
    BUNDLE = "a FHIR Bundle object"


@dataclass(frozen=True)
class ContextField:
    name: str
    shape: Shape
    required: bool
    prefetch_token: bool


_USER_ID = ContextField("userId", Shape.REFERENCE, required=True, prefetch_token=True)
_PATIENT_ID = ContextField("patientId", Shape.ID, required=True, prefetch_token=True)
_ENCOUNTER_ID = ContextField("encounterId", Shape.ID, required=False, prefetch_token=True)
_DRAFT_ORDERS = ContextField("draftOrders", Shape.BUNDLE, required=True, prefetch_token=False)
_SELECTIONS = ContextField("selections", Shape.REFERENCES, required=True, prefetch_token=False)

HOOK_CONTEXTS: dict[str, tuple[ContextField, ...]] = {
    "patient-view": (_USER_ID, _PATIENT_ID, _ENCOUNTER_ID),
    "order-select": (_USER_ID, _PATIENT_ID, _ENCOUNTER_ID, _SELECTIONS, _DRAFT_ORDERS),
    "order-sign": (_USER_ID, _PATIENT_ID, _ENCOUNTER_ID, _DRAFT_ORDERS),
}
