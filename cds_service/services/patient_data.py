"""From the request to a PatientRecord: prefetch resolved (and backfilled from the FHIR server), then filtered.

Without the patient, conditions or procedures the service cannot advise: 412 Precondition Failed, naming what was
missing and why. Other missing data is evaluated without, and the cards say what was unavailable.

This is also where whose data it is gets decided, once (cds_service.fhir.identity): a Patient resource that is not the
context patient answers 412; another patient's resources are dropped here, logged by type only and counted, so that
nothing downstream ever reads them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from cds_service.clinical import reads_medication
from cds_service.errors import PreconditionFailed
from cds_service.fhir.client import READ_OUTCOMES
from cds_service.fhir.identity import own_resources, patient_mismatch
from cds_service.fhir.record import PatientRecord, build_record, resources_in
from cds_service.fhir.resolve import resolve_prefetch
from cds_service.hooks.request import HookRequest
from cds_service.metrics import PRECONDITION_FAILED, count_foreign
from cds_service.services.runtime import Runtime

REQUIRED_KEYS = ("patient", "conditions", "procedures")
log = logging.getLogger("cds_service.patient_data")
UNREADABLE = "fhirServer could not be read; the service's log has the cause under this call's X-Request-ID"


@dataclass(frozen=True)
class PatientData:
    """The context patient's resources as read for one call (prefetch and backfill), and what could not be had. The
    record is built from them under the knowledge in force (which codes are read depends on the value sets), so a
    silent knowledge version builds its own from the same data, with no second read."""

    resources: tuple[dict, ...]
    unavailable: Mapping[str, str]

    def record(self, runtime: Runtime) -> PatientRecord:
        return build_record(self.resources, runtime.now, unavailable=self.unavailable,
                            default_supply_days=runtime.thresholds.medication_default_supply_days,
                            reads_medication=reads_medication)


def patient_data(request: HookRequest, templates: Mapping[str, str], runtime: Runtime) -> PatientData:
    """The data the rules evaluate; 412 when data the service cannot do without cannot be had."""
    resolution = resolve_prefetch(request, templates, runtime.fhir_client, runtime.fetch_policy)
    required = {key: why for key, why in resolution.unavailable.items() if key in REQUIRED_KEYS}
    if required:
        PRECONDITION_FAILED.inc()
        told = {key: _told(why, runtime.fetch_policy.production) for key, why in required.items()}
        raise PreconditionFailed(
            "Required patient data could not be had: "
            + "; ".join(f"{key} ({why})" for key, why in sorted(told.items()))
            + ". Send it as prefetch (see the service's templates in GET /cds-services), or send fhirServer and "
            "fhirAuthorization so the service can read it.",
            causes=required if told != required else None,
        )
    resources = [resource for key in templates if key in resolution.data
                 for resource in resources_in(resolution.data[key])]
    return PatientData(tuple(this_patients(resources, request.patient_id)), resolution.unavailable)


def _told(why: str, production: bool) -> str:
    """What the client is told of why a key is unavailable. In production, the outcome of a read from fhirServer
    (client.READ_OUTCOMES: refused connection, timeout, an HTTP status, a malformed answer) is not: which of them it
    was tells a caller whether something listens at that address and port. The log has it, under the call's
    X-Request-ID."""
    return UNREADABLE if production and getattr(why, "category", None) in READ_OUTCOMES else why


def this_patients(resources: list[dict], patient_id: str) -> list[dict]:
    """The resources that may be the context patient's: 412 on a Patient that is someone else, another patient's
    resources dropped (logged by type, counted)."""
    mismatch = patient_mismatch(resources, patient_id)
    if mismatch is not None:
        PRECONDITION_FAILED.inc()
        count_foreign(["Patient"])
        log.warning("prefetched Patient is not the context patient")
        raise PreconditionFailed(
            f"The patient data is not the context patient's: {mismatch}. The service evaluates the data of "
            "context.patientId only; check the prefetch (or the FHIR server's answer) for this patient.")
    kept, dropped = own_resources(resources, patient_id)
    report_foreign(dropped, "resources of another patient dropped")
    return kept


def report_foreign(resource_types: list[str], message: str) -> None:
    """Count and log what was left out as another patient's: by resource type only, never an identifier."""
    if resource_types:
        count_foreign(resource_types)
        log.warning(message, extra={"dropped": len(resource_types), "resource_types": sorted(set(resource_types))})
