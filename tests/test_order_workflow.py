"""The order workflow as an EHR runs it: one service id for order-select and order-sign, dispatched on `hook`; the
order-select evaluation reused at order-sign only when nothing it read has changed; the old ids deprecated.

Through HTTP, with `responses` as the EHR's FHIR server where the data is read rather than prefetched.
"""

from __future__ import annotations

import copy
import re

import orjson
import pytest
import responses
from prometheus_client import REGISTRY

from cds_service.app import create_app
from cds_service.fixtures import find_fixture
from cds_service.services import order_select
from cds_service.services.order_reuse import OrderEvaluations
from cds_service.state import state
from tests.support import assert_operation_outcome
from tests.test_backfill import AUTH, BASE, FhirServer

ORDERS = "/cds-services/fbss-miss-orders"
MIXED = find_fixture("41-order-mixed-bundle")  # three draft orders: imaging-protocol + opioid-order at sign
DUPLICATE = find_fixture("35-order-duplicate-imaging")  # a recent MRI on file: imaging-duplicate at sign
RED_FLAG_SOURCE = find_fixture("43-order-red-flag")


def _references(fixture) -> list[str]:
    return [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in fixture.draft_orders["entry"]]


def order_call(fixture, hook: str, *, selections=None, prefetch=True, user="Practitioner/sandbox-user",
               draft_orders=None, extra_conditions=()) -> dict:
    """A request for `hook` over the fixture's draft orders (all selected at order-select unless told)."""
    context = {"draftOrders": copy.deepcopy(draft_orders or fixture.draft_orders)}
    if hook == "order-select":
        context["selections"] = selections if selections is not None else _references(fixture)
    body = fixture.hook_request(order_select.SERVICE.prefetch, fixture.anchor, hook=hook, user_id=user,
                                context=context)
    body["context"] = {key: value for key, value in body["context"].items()
                       if hook == "order-select" or key != "selections"}
    if extra_conditions:
        bundle = body["prefetch"]["conditions"]
        bundle.setdefault("entry", []).extend({"resource": resource} for resource in extra_conditions)
    if not prefetch:
        body["prefetch"] = {}
        body.update({"fhirServer": BASE, "fhirAuthorization": dict(AUTH)})
    return body


def types(response) -> list[str]:
    assert response.status_code == 200, response.get_data(as_text=True)
    return [card["source"]["topic"]["code"] for card in orjson.loads(response.get_data())["cards"]]


def counted(hook: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("cds_order_evaluations_total", {"hook": hook, "outcome": outcome}) or 0.0


@pytest.fixture
def app(tmp_path):
    application = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path)})
    state(application).clock = lambda: MIXED.anchor
    return application


@pytest.fixture
def fhir():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        FhirServer(mock, MIXED.resources())
        yield mock


def test_discovery_lists_one_id_for_both_order_hooks_and_not_the_deprecated_ones(app):
    services = orjson.loads(app.test_client().get("/cds-services").get_data())["services"]
    assert [(s["id"], s["hook"]) for s in services] == [
        ("fbss-miss-advisor", "patient-view"), ("fbss-miss-orders", "order-select"), ("fbss-miss-orders", "order-sign")]


def test_select_then_sign_unchanged_is_answered_from_the_select_evaluation(app, fhir):
    """The scripted workflow: the FHIR server is read at order-select only; order-sign, with the same draft orders
    (all of them selected), gets the same advice from the kept findings, as new cards (new uuids)."""
    client = app.test_client()
    reused_before = counted("order-sign", "reused")
    selected = client.post(ORDERS, json=order_call(MIXED, "order-select", prefetch=False))
    reads_at_select = len(fhir.calls)
    assert reads_at_select > 0
    signed = client.post(ORDERS, json=order_call(MIXED, "order-sign", prefetch=False))
    assert types(signed) == types(selected) == ["imaging-protocol", "opioid-order"]
    assert len(fhir.calls) == reads_at_select  # nothing read again
    assert counted("order-sign", "reused") == reused_before + 1
    select_cards = orjson.loads(selected.get_data())["cards"]
    sign_cards = orjson.loads(signed.get_data())["cards"]
    assert {c["uuid"] for c in select_cards}.isdisjoint(c["uuid"] for c in sign_cards)
    assert [c["summary"] for c in select_cards] == [c["summary"] for c in sign_cards]
    ledger = state(app).ledger
    ledger.flush()
    with state(app).database.connect() as connection:
        rows = connection.exec_driver_sql("SELECT service_id, hook FROM issued_card ORDER BY hook").fetchall()
    assert sorted(rows) == [("fbss-miss-orders", "order-select")] * 2 + [("fbss-miss-orders", "order-sign")] * 2


def test_sign_with_changed_draft_orders_is_evaluated_afresh(app, fhir):
    client = app.test_client()
    client.post(ORDERS, json=order_call(MIXED, "order-select", prefetch=False))
    reads = len(fhir.calls)
    fresh_before = counted("order-sign", "fresh")
    changed = copy.deepcopy(MIXED.draft_orders)
    changed["entry"] = [e for e in changed["entry"] if e["resource"]["resourceType"] != "MedicationRequest"]
    signed = client.post(ORDERS, json=order_call(MIXED, "order-sign", prefetch=False, draft_orders=changed))
    assert types(signed) == ["imaging-protocol"]
    assert len(fhir.calls) > reads
    assert counted("order-sign", "fresh") == fresh_before + 1


def test_details_filled_in_at_sign_time_are_a_change(app, fhir):
    client = app.test_client()
    client.post(ORDERS, json=order_call(MIXED, "order-select", prefetch=False))
    reads = len(fhir.calls)
    changed = copy.deepcopy(MIXED.draft_orders)
    changed["entry"][0]["resource"]["note"] = [{"text": "take with food"}]  # not read by any rule, still a change
    client.post(ORDERS, json=order_call(MIXED, "order-sign", prefetch=False, draft_orders=changed))
    assert len(fhir.calls) > reads


def test_a_selection_of_some_orders_is_not_reused_for_signing_all(app, fhir):
    client = app.test_client()
    only_mri = client.post(ORDERS, json=order_call(MIXED, "order-select", prefetch=False,
                                                   selections=["ServiceRequest/sr-mri"]))
    assert types(only_mri) == ["imaging-protocol"]
    reads = len(fhir.calls)
    signed = client.post(ORDERS, json=order_call(MIXED, "order-sign", prefetch=False))
    assert types(signed) == ["imaging-protocol", "opioid-order"]
    assert len(fhir.calls) > reads


def test_another_user_is_evaluated_afresh(app, fhir):
    client = app.test_client()
    client.post(ORDERS, json=order_call(MIXED, "order-select", prefetch=False))
    reads = len(fhir.calls)
    client.post(ORDERS, json=order_call(MIXED, "order-sign", prefetch=False, user="Practitioner/other"))
    assert len(fhir.calls) > reads


def test_an_evaluation_with_unavailable_data_is_not_kept(app):
    """One prefetch key missing and the FHIR server failing at order-select (the cards say what could not be read);
    order-sign, with the same request, reads the FHIR server again."""
    client = app.test_client()

    def partial() -> dict:
        body = order_call(MIXED, "order-select")
        del body["prefetch"]["imagingStudies"]
        body.update({"fhirServer": BASE, "fhirAuthorization": dict(AUTH)})
        return body

    with responses.RequestsMock(assert_all_requests_are_fired=False) as failing:
        failing.add_callback(responses.GET, re.compile(re.escape(BASE) + r"/.*"),
                             callback=lambda request: (503, {}, b""))
        selected = client.post(ORDERS, json=partial())
        assert selected.status_code == 200, selected.get_data(as_text=True)
        assert len(failing.calls) > 0
    assert len(state(app).order_evaluations) == 0
    with responses.RequestsMock(assert_all_requests_are_fired=False) as healthy:
        FhirServer(healthy, MIXED.resources())
        again = client.post(ORDERS, json=partial())
        assert len(healthy.calls) > 0
    assert types(again) == ["imaging-protocol", "opioid-order"]
    assert len(state(app).order_evaluations) == 1


def test_a_red_flag_recorded_between_select_and_sign_is_never_hidden_by_reuse(app):
    """Patient safety: cauda equina syndrome (G83.4) charted after order-select arrives in order-sign's prefetch; the
    sign call is evaluated afresh, the red flag fires and pre-empts the duplicate-imaging card order-select gave."""
    state(app).clock = lambda: DUPLICATE.anchor
    client = app.test_client()
    selected = client.post(ORDERS, json=order_call(DUPLICATE, "order-select"))
    assert types(selected) == ["imaging-duplicate"]
    cauda_equina = copy.deepcopy(next(r for r in RED_FLAG_SOURCE.resources() if r.get("id") == "fx43-cond-111"))
    cauda_equina["id"] = "new-red-flag"
    cauda_equina["subject"] = {"reference": f"Patient/{DUPLICATE.patient_id}"}
    cauda_equina["onsetDateTime"] = cauda_equina["recordedDate"] = DUPLICATE.anchor.date().isoformat()
    signed = client.post(ORDERS, json=order_call(DUPLICATE, "order-sign", extra_conditions=[cauda_equina]))
    assert "red-flag" in types(signed)
    assert "imaging-duplicate" not in types(signed)
    same_again = client.post(ORDERS, json=order_call(DUPLICATE, "order-sign"))  # without it: the kept findings
    assert types(same_again) == ["imaging-duplicate"]


def test_kept_evaluations_expire(app, fhir):
    now = [0.0]
    state(app).order_evaluations = OrderEvaluations(120, 10, state(app).knowledge_version, clock=lambda: now[0])
    client = app.test_client()
    client.post(ORDERS, json=order_call(MIXED, "order-select", prefetch=False))
    reads = len(fhir.calls)
    now[0] = 121.0
    client.post(ORDERS, json=order_call(MIXED, "order-sign", prefetch=False))
    assert len(fhir.calls) > reads


def test_the_cache_is_bounded_in_entries(app):
    state(app).order_evaluations = OrderEvaluations(120, 2, state(app).knowledge_version)
    client = app.test_client()
    for user in ("Practitioner/a", "Practitioner/b", "Practitioner/c"):
        client.post(ORDERS, json=order_call(MIXED, "order-select", user=user))
    assert len(state(app).order_evaluations) == 2


def test_reuse_can_be_turned_off(tmp_path, fhir):
    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path), "ORDER_REUSE_SECONDS": 0})
    state(app).clock = lambda: MIXED.anchor
    assert state(app).order_evaluations is None
    client = app.test_client()
    client.post(ORDERS, json=order_call(MIXED, "order-select", prefetch=False))
    reads = len(fhir.calls)
    assert types(client.post(ORDERS, json=order_call(MIXED, "order-sign", prefetch=False))) == [
        "imaging-protocol", "opioid-order"]
    assert len(fhir.calls) == 2 * reads


def test_key_differs_by_every_input():
    evaluations = OrderEvaluations(120, 10, "v1")
    base = {"caller": "iss|t", "fhir_server": BASE, "patient_id": "p", "user_id": "Practitioner/u",
            "now": MIXED.anchor, "draft_orders": {"entry": []}, "evaluated": ["ServiceRequest/a"], "prefetch": {}}
    keys = {evaluations.key(**base)}
    for name, other in (("caller", "iss2|t"), ("fhir_server", None), ("patient_id", "q"), ("user_id", "x"),
                        ("now", MIXED.anchor.replace(year=MIXED.anchor.year + 1)), ("draft_orders", {"entry": [1]}),
                        ("evaluated", []), ("prefetch", {"patient": None})):
        keys.add(evaluations.key(**{**base, name: other}))
    keys.add(OrderEvaluations(120, 10, "v2").key(**base))
    assert len(keys) == 10
    assert evaluations.key(**base) == evaluations.key(**{**base, "prefetch": {}})  # canonical: same inputs, same key


@pytest.mark.parametrize(("old", "hook"), [("fbss-miss-order-select", "order-select"),
                                            ("fbss-miss-order-sign", "order-sign")])
def test_deprecated_ids_still_answer_their_hook_and_are_counted(app, old, hook):
    before = REGISTRY.get_sample_value("cds_deprecated_service_id_calls_total", {"service": old}) or 0.0
    client = app.test_client()
    response = client.post(f"/cds-services/{old}", json=order_call(MIXED, hook))
    assert types(response) == ["imaging-protocol", "opioid-order"]
    assert REGISTRY.get_sample_value("cds_deprecated_service_id_calls_total", {"service": old}) == before + 1
    other = "order-sign" if hook == "order-select" else "order-select"
    assert_operation_outcome(client.post(f"/cds-services/{old}", json=order_call(MIXED, other)), 400,
                             f"answers the '{hook}' hook, but the request is for '{other}'")
    card = orjson.loads(response.get_data())["cards"][0]
    feedback = {"feedback": [{"card": card["uuid"], "outcome": "overridden",
                              "outcomeTimestamp": "2026-01-01T00:00:00Z"}]}
    assert client.post(f"/cds-services/{old}/feedback", json=feedback).status_code == 200
    state(app).ledger.flush()
    with state(app).database.connect() as connection:
        assert connection.exec_driver_sql("SELECT DISTINCT service_id FROM feedback").fetchall() == [
            ("fbss-miss-orders",)]
        assert connection.exec_driver_sql("SELECT DISTINCT service_id FROM issued_card").fetchall() == [
            ("fbss-miss-orders",)]


def test_a_hook_the_id_does_not_serve_is_400_naming_the_hooks_it_does(app):
    body = find_fixture("01-fbss-lumbar-classic").hook_request({}, None)
    response = app.test_client().post(ORDERS, json=body)
    assert_operation_outcome(response, 400, "answers the 'order-select' and 'order-sign' hooks, but the request is "
                                            "for 'patient-view'")


def test_silent_mode_turns_reuse_off(tmp_path):
    from tests.test_silent import silent_folder  # noqa: PLC0415

    app = create_app({"TESTING": True, "INSTANCE_PATH": str(tmp_path),
                      "SILENT_KNOWLEDGE": str(silent_folder(tmp_path))})
    assert state(app).silent is not None
    assert state(app).order_evaluations is None
