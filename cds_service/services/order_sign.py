"""order-sign: orders are about to be signed; the same advice as order-select, over every draft order."""

from __future__ import annotations

from cds_service.fhir.prefetch import PATIENT_RECORD
from cds_service.hooks.request import HookRequest
from cds_service.services.declaration import Card, CdsServiceDeclaration
from cds_service.services.ordering import ORDER_SERVICE_ID, advise_orders
from cds_service.services.runtime import Runtime
from cds_service.services.usage import PATIENT_DATA_USAGE


def advise(request: HookRequest, runtime: Runtime) -> list[Card]:
    """Cards about every draft order (rules O1-O5)."""
    return advise_orders(request, runtime, selected_only=False)


SERVICE = CdsServiceDeclaration(
    id=ORDER_SERVICE_ID,
    hook="order-sign",
    title="Spine imaging and opioid order advisor (order-sign)",
    description=(
        "Before spine imaging, opioid or spine-surgery orders are signed: recommends the imaging protocol that "
        "fits a patient with prior spine surgery, flags imaging that is not indicated or duplicates a recent "
        "study, and flags opioid orders and surgical risk factors."
    ),
    prefetch=PATIENT_RECORD,
    usage_requirements=PATIENT_DATA_USAGE,
    advise=advise,
    deprecated_ids=("fbss-miss-order-sign",),
)
