"""patient-view: the chart is opened; review the patient for FBSS, red flags and MISS/revision candidacy."""

from __future__ import annotations

from cds_service.clinical import evaluate
from cds_service.fhir.prefetch import PATIENT_RECORD
from cds_service.hooks.request import HookRequest
from cds_service.services.declaration import Card, CdsServiceDeclaration
from cds_service.services.patient_data import PatientData, patient_data
from cds_service.services.runtime import Runtime
from cds_service.services.usage import PATIENT_DATA_USAGE


def advise(request: HookRequest, runtime: Runtime) -> list[Card]:
    """Prefetch -> record -> facts and rules R1-R11 -> cards, in catalogue order."""
    data = patient_data(request, PATIENT_RECORD, runtime)
    if runtime.rerun is not None:  # a silent knowledge version evaluates the same data after the response
        runtime.rerun.evaluate = lambda other: _cards(request, data, other)
    return _cards(request, data, runtime)


def _cards(request: HookRequest, data: PatientData, runtime: Runtime) -> list[Card]:
    record = data.record(runtime)
    evaluation = evaluate(record, runtime.now, runtime.thresholds)
    return runtime.renderer.render(evaluation.findings, now=runtime.now, patient_id=request.patient_id,
                                   app_link=runtime.app_link,
                                   unavailable=record.unavailable)


SERVICE = CdsServiceDeclaration(
    id="fbss-miss-advisor",
    hook="patient-view",
    title="Spine surgery follow-up advisor (FBSS / MISS)",
    description=(
        "Reviews the chart for persistent or new symptoms after spine surgery (failed back surgery syndrome), "
        "red flags needing urgent action, and candidacy and risk factors for minimally invasive or revision spine "
        "surgery; suggests imaging per ACR Appropriateness Criteria and spine-surgeon or pain-management referral."
    ),
    prefetch=PATIENT_RECORD,
    usage_requirements=PATIENT_DATA_USAGE,
    advise=advise,
)
