"""From the request to a PatientRecord: prefetch resolved (and backfilled from the FHIR server), then filtered.

Without the patient, conditions or procedures the service cannot advise: 412 Precondition Failed, naming what was
missing and why. Other missing data is evaluated without, and the cards say what was unavailable.
"""

from __future__ import annotations

from collections.abc import Mapping

from cds_service.clinical import reads_medication
from cds_service.errors import PreconditionFailed
from cds_service.fhir.record import PatientRecord, build_record, resources_in
from cds_service.fhir.resolve import resolve_prefetch
from cds_service.hooks.request import HookRequest
from cds_service.metrics import PRECONDITION_FAILED
from cds_service.services.runtime import Runtime

REQUIRED_KEYS = ("patient", "conditions", "procedures")


def patient_record(request: HookRequest, templates: Mapping[str, str], runtime: Runtime) -> PatientRecord:
    """The record the rules evaluate; 412 when data the service cannot do without cannot be had."""
    resolution = resolve_prefetch(request, templates, runtime.fhir_client, runtime.fetch_policy)
    required = {key: why for key, why in resolution.unavailable.items() if key in REQUIRED_KEYS}
    if required:
        PRECONDITION_FAILED.inc()
        raise PreconditionFailed(
            "Required patient data could not be had: "
            + "; ".join(f"{key} ({why})" for key, why in sorted(required.items()))
            + ". Send it as prefetch (see the service's templates in GET /cds-services), or send fhirServer and "
            "fhirAuthorization so the service can read it."
        )
    resources = [resource for key in templates if key in resolution.data
                 for resource in resources_in(resolution.data[key])]
    return build_record(resources, runtime.now, unavailable=resolution.unavailable,
                        default_supply_days=runtime.thresholds.medication_default_supply_days,
                        reads_medication=reads_medication)
