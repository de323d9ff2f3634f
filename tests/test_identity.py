"""One patient's data only: another patient's resources never drive advice (cds_service.fhir.identity).

Through HTTP: a red flag of another patient in the prefetch raises no card, a Patient that is someone else answers
412, a draft order for another patient is not advised on; and, as a property, adding another patient's resources to
any fixture's prefetch never changes its cards.
"""

from __future__ import annotations

import copy
import logging

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cds_service.fhir.identity import is_foreign, own_resources, patient_mismatch, referenced_patient
from cds_service.fixtures import load_fixtures
from cds_service.services import declared_services
from cds_service.state import state
from tests.support import SERVICE_IDS, assert_operation_outcome, without_call_ids

FIXTURES = load_fixtures()
BY_NAME = {f.name: f for f in FIXTURES}


@pytest.mark.parametrize(("reference", "named"), [
    ("Patient/p1", "p1"),
    ("https://ehr.example/fhir/R4/Patient/p1", "p1"),
    ("Patient/p1/_history/3", "p1"),
    ("Patient/p2", "p2"),
    ("Group/g1", ""),
    ("Device/d1", ""),
    ("#contained-patient", None),
    ("urn:uuid:0f3e7c1a-2b1c-4d4e-9f00-000000000001", None),
    ("p1", None),
    ("Patient/", None),
])
def test_which_patient_a_reference_names(reference, named):
    assert referenced_patient(reference) == named


def test_foreign_resources_are_those_naming_someone_or_something_else():
    assert not is_foreign({"resourceType": "Condition", "subject": {"reference": "Patient/p1"}}, "p1")
    assert is_foreign({"resourceType": "Condition", "subject": {"reference": "Patient/p2"}}, "p1")
    assert is_foreign({"resourceType": "Observation", "subject": {"reference": "Group/ward-4"}}, "p1")
    assert is_foreign({"resourceType": "Condition", "patient": {"reference": "Patient/p2"}}, "p1")
    # Nothing literal to check: kept (it came from the search for this patient and names no one else).
    assert not is_foreign({"resourceType": "Condition"}, "p1")
    assert not is_foreign({"resourceType": "Condition", "subject": {"identifier": {"value": "MRN-1"}}}, "p1")
    assert not is_foreign({"resourceType": "Condition", "subject": {"reference": 7}}, "p1")
    kept, dropped = own_resources([{"resourceType": "Patient", "id": "p1"},
                                   {"resourceType": "Procedure", "subject": {"reference": "Patient/p2"}},
                                   {"resourceType": "Condition", "subject": {"reference": "Patient/p1"}}], "p1")
    assert [r["resourceType"] for r in kept] == ["Patient", "Condition"] and dropped == ["Procedure"]


def test_a_patient_resource_that_is_someone_else_is_a_mismatch():
    assert patient_mismatch([{"resourceType": "Patient", "id": "p1"}], "p1") is None
    assert patient_mismatch([{"resourceType": "Patient", "id": "p2"}], "p1")
    assert patient_mismatch([{"resourceType": "Patient"}], "p1")


def _call(app, fixture, mutate=None, context=None):
    state(app).clock = lambda: fixture.anchor
    hook = fixture.expected["hook"]
    service = next(s for s in declared_services() if s.hook == hook)
    body = copy.deepcopy(fixture.hook_request(service.prefetch, fixture.anchor, hook=hook))  # fixtures stay as loaded
    if context:
        body["context"].update(context)
    if mutate:
        mutate(body)
    return app.test_client().post(f"/cds-services/{SERVICE_IDS[hook]}", json=body)


def _card_view(response) -> list[dict]:
    """The cards without what differs between any two calls (uuids)."""
    return [without_call_ids(card) for card in orjson.loads(response.get_data())["cards"]]


def _foreign_cauda_equina(patient_ref: str) -> dict:
    return {"resourceType": "Condition", "id": "other-ces",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                           "code": "active"}]},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G83.4"}]},
            "subject": {"reference": patient_ref}, "onsetDateTime": "2025-05-30"}


@pytest.mark.parametrize("reference", ["Patient/fx99", "https://ehr.example/fhir/Patient/fx99",
                                       "Patient/fx99/_history/2", "Group/ward-4"])
def test_another_patients_red_flag_raises_no_card_in_this_chart(app, reference, caplog):
    fixture = BY_NAME["01-fbss-lumbar-classic"]
    expected = _card_view(_call(app, fixture))
    assert [c["source"]["topic"]["code"] for c in expected] == ["fbss-imaging"]

    def add_foreign(body):
        body["prefetch"]["conditions"]["entry"].append({"resource": _foreign_cauda_equina(reference)})

    with caplog.at_level(logging.INFO):
        response = _call(app, fixture, add_foreign)
    assert response.status_code == 200
    assert _card_view(response) == expected
    dropped = [r for r in caplog.records if r.getMessage() == "resources of another patient dropped"]
    assert dropped and dropped[0].resource_types == ["Condition"]
    assert "fx99" not in caplog.text and "ward-4" not in caplog.text  # no identifier of anyone in the log
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'cds_foreign_resources_total{resource_type="Condition"}' in metrics


def test_the_same_red_flag_in_this_patients_own_chart_does_fire(app):
    """The nearest case that must fire: the same Condition, naming the context patient."""
    fixture = BY_NAME["01-fbss-lumbar-classic"]

    def add_own(body):
        own = _foreign_cauda_equina(f"Patient/{fixture.patient_id}")
        body["prefetch"]["conditions"]["entry"].append({"resource": own})

    cards = _card_view(_call(app, fixture, add_own))
    assert [c["source"]["topic"]["code"] for c in cards] == ["red-flag"]


@pytest.mark.parametrize("patient_id", ["someone-else", None])
def test_a_patient_resource_that_is_not_the_context_patient_answers_412(app, patient_id):
    fixture = BY_NAME["10-red-flag-cauda-equina"]

    def swap_patient(body):
        if patient_id is None:
            body["prefetch"]["patient"].pop("id")
        else:
            body["prefetch"]["patient"]["id"] = patient_id

    response = _call(app, fixture, swap_patient)
    body = assert_operation_outcome(response, 412, "not the context patient's")
    assert "someone-else" not in body["issue"][0]["diagnostics"]


def test_a_foreign_patient_inside_a_search_bundle_also_answers_412(app):
    fixture = BY_NAME["01-fbss-lumbar-classic"]

    def include_other_patient(body):
        body["prefetch"]["conditions"]["entry"].append({"resource": {"resourceType": "Patient", "id": "fx99"}})

    assert_operation_outcome(_call(app, fixture, include_other_patient), 412)


def test_a_draft_order_for_another_patient_is_not_advised_on(app):
    fixture = BY_NAME["33-order-early-imaging-not-indicated"]
    assert [c["source"]["topic"]["code"] for c in _card_view(_call(app, fixture))] == ["imaging-not-indicated"]
    orders = copy.deepcopy(fixture.draft_orders)
    for entry in orders["entry"]:
        entry["resource"]["subject"] = {"reference": "Patient/fx99"}
    response = _call(app, fixture, context={"draftOrders": orders})
    assert response.status_code == 200 and _card_view(response) == []
    metrics = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'cds_foreign_resources_total{resource_type="ServiceRequest"}' in metrics


# ---------------------------------------------------------------------------------------------- property

# Every fixture's own resources, as another patient's: each already names its own fixture patient as subject.
_OTHERS = [(f.patient_id, entry["resource"]) for f in FIXTURES for entry in f.bundle["entry"]
           if entry["resource"]["resourceType"] != "Patient"]
_REFERENCE_FORMS = (lambda pid: f"Patient/{pid}", lambda pid: f"https://ehr.example/fhir/Patient/{pid}",
                    lambda pid: f"Patient/{pid}/_history/1")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                 HealthCheck.function_scoped_fixture])
@given(fixture=st.sampled_from(FIXTURES), data=st.data())
def test_adding_another_patients_resources_never_changes_the_cards(app, fixture, data):
    expected = _card_view(_call(app, fixture))
    others = data.draw(st.lists(st.sampled_from([o for o in _OTHERS if o[0] != fixture.patient_id]),
                                min_size=1, max_size=12))
    placements = [(data.draw(st.sampled_from(_REFERENCE_FORMS)), data.draw(st.sampled_from(
        ["conditions", "procedures", "observations", "medicationRequests", "medicationStatements",
         "serviceRequests", "diagnosticReports", "imagingStudies"]))) for _ in others]

    def add_others(body):
        for (owner, resource), (form, key) in zip(others, placements, strict=True):
            foreign = copy.deepcopy(resource)
            foreign["id"] = f"other-{owner}-{foreign['id']}"
            foreign["subject"] = {"reference": form(owner)}
            bundle = body["prefetch"].get(key) or {"resourceType": "Bundle", "type": "searchset", "entry": []}
            bundle.setdefault("entry", []).append({"resource": foreign})
            body["prefetch"][key] = bundle

    response = _call(app, fixture, add_others)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert _card_view(response) == expected
