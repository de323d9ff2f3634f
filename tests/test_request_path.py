"""Guard: fhir.resources never validates prefetched data on the request path (counted, not timed).

Full validation costs about 0.3 ms per resource (performance-notes.md). The service validates only what it emits
(suggestion resources) and draft orders, and remembers the result by shape, so a repeated call validates nothing.
"""

from __future__ import annotations

import orjson
import pytest
from pydantic import BaseModel

from cds_service.fhir.prefetch import PATIENT_RECORD
from cds_service.fixtures import find_fixture
from cds_service.sandbox.search import prefetch_for
from cds_service.services import order_select
from cds_service.state import state
from tests.clinical.builders import E
from tests.clinical.test_hot_path import synthetic_patient

PREFETCHED_TYPES = {"Bundle", "Patient", "Condition", "Procedure", "Observation", "MedicationRequest",
                    "MedicationStatement", "DiagnosticReport", "ImagingStudy"}


@pytest.fixture
def validations(monkeypatch):
    calls: list[str] = []
    original = BaseModel.model_validate.__func__

    def counting(cls, *args, **kwargs):
        calls.append(cls.__name__)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(BaseModel, "model_validate", classmethod(counting))
    return calls


def test_a_large_prefetch_is_never_validated_with_fhir_resources(app, validations):
    state(app).clock = lambda: E
    context = {"userId": "Practitioner/1", "patientId": "pat-1"}
    body = {"hook": "patient-view", "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea", "context": context,
            "prefetch": prefetch_for(PATIENT_RECORD, context, synthetic_patient(500))}
    client = app.test_client()
    first = client.post("/cds-services/fbss-miss-advisor", json=body)
    assert first.status_code == 200 and orjson.loads(first.get_data())["cards"]
    # Only the emitted suggestion resources may be validated, a handful, never the 500 prefetched resources.
    assert not set(validations) & PREFETCHED_TYPES
    assert 0 < validations.count("ServiceRequest") <= 10
    validations.clear()
    assert client.post("/cds-services/fbss-miss-advisor", json=body).status_code == 200
    assert validations == []  # remembered by shape: nothing validated again


def test_repeated_order_select_validates_nothing_again(app, validations):
    fixture = find_fixture("order-mixed-bundle")
    state(app).clock = lambda: fixture.anchor
    selections = ["ServiceRequest/sr-mri", "MedicationRequest/mr-hydrocodone"]
    context = dict(fixture.expected["context"], selections=selections)
    body = fixture.hook_request(order_select.SERVICE.prefetch, fixture.anchor, hook="order-select", context=context)
    client = app.test_client()
    assert client.post("/cds-services/fbss-miss-orders", json=body).status_code == 200
    validations.clear()
    assert client.post("/cds-services/fbss-miss-orders", json=body).status_code == 200
    assert validations == []
