"""order-select and order-sign through HTTP: selections, draft-order parsing, suggestions acting on the draft."""

from __future__ import annotations

import copy

import orjson
import pytest
from click.testing import CliRunner

from cds_service.cli import main
from cds_service.clinical.orders import classify
from cds_service.fixtures import find_fixture, suggested_codes
from cds_service.hooks.draft_orders import parse_draft_orders, resolve_medication
from cds_service.render.catalogue import load_catalogue
from cds_service.services import order_select, order_sign
from cds_service.state import state

ORDERS = "/cds-services/fbss-miss-orders"  # order-select and order-sign, dispatched on `hook`


def call(app, fixture_name, hook=None, *, mutate=None):
    fixture = find_fixture(fixture_name)
    hook = hook or fixture.expected["hook"]
    service = order_select.SERVICE if hook == "order-select" else order_sign.SERVICE
    state(app).clock = lambda: fixture.anchor
    context = copy.deepcopy(fixture.expected["context"])
    if hook == "order-select" and "selections" not in context:
        context["selections"] = [f"{e['resource']['resourceType']}/{e['resource']['id']}"
                                 for e in context["draftOrders"]["entry"]]
    if mutate:
        mutate(context)
    body = fixture.hook_request(service.prefetch, fixture.anchor, hook=hook, context=context)
    response = app.test_client().post(ORDERS, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    return orjson.loads(response.get_data())["cards"]


def types(cards):
    return [card["source"]["topic"]["code"] for card in cards]


def test_protocol_card_deletes_the_draft_and_creates_72158_with_the_drafts_reason_and_priority(app):
    def urgent(context):
        draft = context["draftOrders"]["entry"][0]["resource"]
        draft["priority"] = "urgent"
        draft["reasonCode"] = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.16"}]}]

    [card] = call(app, "order-mri-without-contrast-after-surgery", mutate=urgent)
    [suggestion] = card["suggestions"]
    delete, create = suggestion["actions"]
    assert delete == {"type": "delete", "description": delete["description"], "resourceId": "ServiceRequest/sr-mri"}
    resource = create["resource"]
    assert create["type"] == "create" and resource["priority"] == "urgent"
    assert resource["reasonCode"] == [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "M54.16"}]}]
    assert {c["code"] for c in resource["code"]["coding"]} == {"72158", "24967-2"}
    assert "MRI lumbar spine without contrast (CPT 72148)" in card["detail"]


def test_selections_limit_order_select_to_the_selected_orders(app):
    only_opioid = call(app, "order-select-one-of-several")
    assert types(only_opioid) == ["opioid-order"]

    def select_mri(context):
        context["selections"] = ["ServiceRequest/sr-mri"]

    assert types(call(app, "order-select-one-of-several", mutate=select_mri)) == ["imaging-protocol"]


def test_order_sign_evaluates_every_draft_order(app):
    assert types(call(app, "order-select-one-of-several", "order-sign")) == ["imaging-protocol", "opioid-order"]


def test_contained_medication_and_single_object_reason_code(app):
    cards = call(app, "order-sandbox-deviations")
    assert types(cards) == ["imaging-protocol", "opioid-order"]
    create = cards[0]["suggestions"][0]["actions"][1]["resource"]
    assert create["reasonCode"][0]["coding"][0]["code"] == "M54.16"  # the draft's reason, normalised to an array
    orders = parse_draft_orders(find_fixture("order-sandbox-deviations").draft_orders)
    assert [o.deviations for o in orders] == [(), ("reasonCode sent as an object, not an array",)]


def test_medication_reference_into_the_bundle_is_resolved():
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:m1", "resource": {"resourceType": "Medication", "id": "m1", "code": {"coding": [
            {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1049621"}]}}},
        {"resource": {"resourceType": "MedicationRequest", "id": "mr1", "status": "draft", "intent": "order",
                      "subject": {"reference": "Patient/p"}, "medicationReference": {"reference": "Medication/m1"}}}]}
    orders = parse_draft_orders(bundle)
    request = next(o for o in orders if o.resource_type == "MedicationRequest")
    assert resolve_medication(request, bundle)["coding"][0]["code"] == "1049621"


def test_unknown_resource_types_and_re_signed_orders_are_tolerated(app):
    def add_unusual(context):
        entries = context["draftOrders"]["entry"]
        entries.append({"resource": {"resourceType": "NutritionOrder", "id": "n1", "status": "draft",
                                     "intent": "order", "patient": {"reference": "Patient/x"},
                                     "dateTime": "2025-06-01"}})
        entries.append({"resource": {"resourceType": "ProcedureRequest", "id": "dstu2"}})  # a DSTU2/STU3 name
        entries[0]["resource"]["status"] = "active"  # order-sign 1.1.0: revised orders may be re-signed

    assert types(call(app, "order-mixed-bundle", mutate=add_unusual)) == ["imaging-protocol", "opioid-order"]


def test_a_malformed_draft_order_is_kept_not_dropped(app):
    def break_it(context):
        context["draftOrders"]["entry"][1]["resource"]["subject"] = "Patient/x"  # not a Reference

    assert types(call(app, "order-mixed-bundle", mutate=break_it)) == ["imaging-protocol", "opioid-order"]
    bundle = copy.deepcopy(find_fixture("order-mixed-bundle").draft_orders)
    bundle["entry"][1]["resource"]["subject"] = "Patient/x"
    [_, mri, _] = parse_draft_orders(bundle)
    assert mri.deviations and "not valid FHIR R4" in mri.deviations[0]


def test_identical_order_select_calls_give_identical_advice(app):
    def advice():
        return [(card["source"]["topic"]["code"], sorted(suggested_codes(card)), card["summary"], card["detail"])
                for card in call(app, "order-mixed-bundle", "order-sign")]

    first = advice()
    assert all(advice() == first for _ in range(3))


def test_a_lab_order_alone_gets_no_advice(app):
    def lab_only(context):
        context["draftOrders"]["entry"] = [context["draftOrders"]["entry"][2]]

    assert call(app, "order-mixed-bundle", mutate=lab_only) == []


@pytest.mark.parametrize(("args", "expected"), [
    (["simulate", "order-select-one-of-several", "--hook", "order-select", "--order", "sr-mri"],
     "delete ServiceRequest/sr-mri; 72158"),
    (["simulate", "order-select-one-of-several", "--hook", "order-select"], "Refer to pain management"),
    (["simulate", "order-select-one-of-several", "--hook", "order-sign"], "[INFO] Prior lumbar surgery"),
])
def test_simulate_order_hooks(args, expected):
    result = CliRunner().invoke(main, [*args, "--at", "2025-06-01"])
    assert result.exit_code == 0, result.output
    assert expected in result.output


def test_simulate_order_hook_needs_draft_orders():
    result = CliRunner().invoke(main, ["simulate", "01", "--hook", "order-sign"])
    assert result.exit_code != 0 and "no draft orders" in result.output


def test_simulate_unknown_order():
    result = CliRunner().invoke(main, ["simulate", "order-mixed-bundle", "--hook", "order-select", "--order", "zz"])
    assert result.exit_code != 0 and "no draft order 'zz'" in result.output


@pytest.mark.parametrize(("key", "kind"), [
    ("referral-spine-surgeon", "spine-surgery"),
    ("referral-urgent-spine-surgery", "spine-surgery"),
    ("referral-spine-specialist", "spine-surgery"),
    ("referral-pain-management", "other"),
])
def test_the_services_own_referrals_signed_back_are_classified_by_their_codes(key, kind):
    """cards/orders.yaml (what a referral suggestion creates) and VS-REFERRAL (how draft referrals are recognised)
    carry the same codes; a referral the service proposed must be recognised when it comes back, by code alone."""
    template = load_catalogue().orders[key]
    draft = {"resourceType": "ServiceRequest", "code": {"coding": [template["code"]]},
             "performerType": {"coding": [{"system": c["system"], "code": c["code"]}  # no words to fall back on
                                          for c in template["performerType"]["coding"]]}}
    assert classify("ServiceRequest", draft, "ServiceRequest/proposed").kind == kind


# Issue 21: order cards read the order. Through HTTP, on the fixtures' own charts.

def _first_order(context):
    return context["draftOrders"]["entry"][0]["resource"]


@pytest.mark.parametrize("priority", ["stat", "urgent", "asap"])
def test_an_urgent_mri_is_never_called_not_indicated_or_a_duplicate(app, priority):
    for name in ("33-order-early-imaging-not-indicated", "35-order-duplicate-imaging"):
        assert types(call(app, name)), name  # the routine order gets its card
        assert types(call(app, name, mutate=lambda c: _first_order(c).update(priority=priority))) == [], name


def test_an_mri_ordered_for_suspected_cauda_equina_is_never_called_not_indicated(app):
    reason = [{"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "G83.4"}]}]
    assert types(call(app, "33-order-early-imaging-not-indicated",
                      mutate=lambda c: _first_order(c).update(reasonCode=reason))) == []


def test_another_contrast_protocol_is_not_a_duplicate(app):
    with_contrast = {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72158"}]}
    assert types(call(app, "35-order-duplicate-imaging",
                      mutate=lambda c: _first_order(c).update(code=with_contrast))) == []


@pytest.mark.parametrize("odd_id", [5, None, "has space", "x" * 65])
def test_a_draft_without_a_fhir_id_gets_no_suggestion_that_would_delete_it(app, odd_id):
    """Found by the property test: the delete action named `ServiceRequest/#1`, which no EHR can resolve (and the
    schema refuses). The card stays; the suggestion that cannot be applied as made is not offered."""
    def mutate(context):
        resource = context["draftOrders"]["entry"][1]["resource"]
        if odd_id is None:
            resource.pop("id", None)
        else:
            resource["id"] = odd_id

    unchanged = call(app, "order-mixed-bundle", "order-sign")
    cards = call(app, "order-mixed-bundle", "order-sign", mutate=mutate)  # the test client checks the response schema
    assert types(cards) == types(unchanged)
    deletes = [action["resourceId"] for card in cards for s in card.get("suggestions", ())
               for action in s["actions"] if action["type"] == "delete"]
    assert all("#" not in ref and " " not in ref for ref in deletes)
    assert len(deletes) < len([action for card in unchanged for s in card.get("suggestions", ())
                               for action in s["actions"] if action["type"] == "delete"])


@pytest.mark.parametrize("rxnorm", ["351267", "1010604"])  # buprenorphine/naloxone sublingual tablet, film
def test_an_order_for_buprenorphine_with_naloxone_gets_no_opioid_card(app, rxnorm):
    """Medication for opioid use disorder is never advised against (CDC 2022, recommendation 12). (A buprenorphine
    named only in text may be a pain patch: it is MOUD only with opioid use disorder on the problem list.)"""
    def moud(context):
        context["draftOrders"]["entry"][1]["resource"]["medicationCodeableConcept"] = {
            "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": rxnorm}]}

    assert types(call(app, "order-select-one-of-several")) == ["opioid-order"]  # oxycodone, as the fixture has it
    assert types(call(app, "order-select-one-of-several", mutate=moud)) == []


def test_the_opioid_order_card_checks_per_cdc_2022_and_never_calls_an_order_dependence(app):
    [card] = call(app, "order-select-one-of-several")
    text = card["summary"] + card["detail"]
    assert "dependence" not in text.lower() and "seed" not in text.lower()
    for check in ("morphine milligram equivalents", "naloxone", "prescription drug monitoring program",
                  "benzodiazepines"):
        assert check in card["detail"]
    assert card["links"][0]["url"] == "https://www.cdc.gov/mmwr/volumes/71/rr/rr7103a1.htm"
