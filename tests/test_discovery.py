"""GET /cds-services: generated from the service declarations, valid against the strict discovery schema."""

from __future__ import annotations

import re

import orjson
import pytest

from cds_service.fhir.prefetch import invalid_tokens
from cds_service.services import declared_services
from cds_service.services.declaration import CdsServiceDeclaration, ServiceRegistry

TOKEN_2_0 = re.compile(
    r"\{\{(context\.(userId|patientId|encounterId)|userPractitionerId|userPractitionerRoleId|userPatientId"
    r"|userRelatedPersonId)\}\}"
)


def test_discovery_lists_one_service_per_hook(client):
    response = client.get("/cds-services")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    services = orjson.loads(response.get_data())["services"]
    assert sorted(service["hook"] for service in services) == ["order-select", "order-sign", "patient-view"]
    for service in services:
        assert {"hook", "id", "title", "description", "prefetch", "usageRequirements"} <= set(service)


def test_discovery_is_generated_from_the_declarations(client):
    services = orjson.loads(client.get("/cds-services").get_data())["services"]
    assert services == [declaration.discovery_entry() for declaration in declared_services()]


def test_id_hook_pairs_are_unique(client):
    services = orjson.loads(client.get("/cds-services").get_data())["services"]
    pairs = [(service["id"], service["hook"]) for service in services]
    assert len(pairs) == len(set(pairs))


def test_every_template_uses_only_2_0_tokens_and_relative_urls(client):
    """Conformance T-1..T-3 and Q2: the mechanical regex check of the checklist, independent of the code's own."""
    for service in orjson.loads(client.get("/cds-services").get_data())["services"]:
        for key, template in service["prefetch"].items():
            remainder = TOKEN_2_0.sub("", template)
            assert "{{" not in remainder and "}}" not in remainder, (service["id"], key)
            assert not template.startswith(("/", "http:", "https:")), (service["id"], key)
            assert "sort:desc" not in template


def test_patient_record_templates_cover_what_the_rules_read(client):
    service = next(s for s in orjson.loads(client.get("/cds-services").get_data())["services"]
                   if s["hook"] == "patient-view")
    assert service["prefetch"]["patient"] == "Patient/{{context.patientId}}"
    for key in ("conditions", "procedures", "observations", "medicationRequests", "medicationStatements",
                "serviceRequests", "diagnosticReports", "imagingStudies"):
        assert "patient={{context.patientId}}" in service["prefetch"][key]
    for loinc in ("4548-4", "39156-5", "72166-2", "72514-3"):  # HbA1c, BMI, smoking, pain score
        assert f"http://loinc.org|{loinc}" in service["prefetch"]["observations"]


def test_discovery_with_no_services_is_an_empty_list():
    assert ServiceRegistry([]).discovery() == {"services": []}


def _declaration(**overrides) -> CdsServiceDeclaration:
    fields = {"id": "x", "hook": "patient-view", "title": "X", "description": "X",
              "advise": lambda request, runtime: [], "prefetch": {}}
    fields.update(overrides)
    return CdsServiceDeclaration(**fields)


def test_declaration_without_prefetch_omits_the_member():
    assert "prefetch" not in _declaration().discovery_entry()
    assert "usageRequirements" not in _declaration().discovery_entry()


def test_registry_refuses_duplicate_ids():
    with pytest.raises(ValueError, match="declared twice"):
        ServiceRegistry([_declaration(), _declaration()])


def test_registry_refuses_unknown_hooks():
    with pytest.raises(ValueError, match="unsupported hook"):
        ServiceRegistry([_declaration(hook="medication-prescribe")])


@pytest.mark.parametrize("template", [
    "Observation?patient={{context.patient.id}}",
    "Observation?patient={{context.patientId}}&date=ge{{today()}}",
    "Condition?patient={{ context.patientId }}",
    "Condition?patient={{context.patientId}",
])
def test_registry_refuses_templates_with_tokens_2_0_does_not_have(template):
    assert invalid_tokens(template)
    with pytest.raises(ValueError, match="invalid tokens"):
        ServiceRegistry([_declaration(prefetch={"k": template})])


def test_one_id_may_serve_several_hooks_and_is_listed_once_per_hook():
    registry = ServiceRegistry([_declaration(hook="order-select"), _declaration(hook="order-sign")])
    assert [(s["id"], s["hook"]) for s in registry.discovery()["services"]] == [("x", "order-select"),
                                                                              ("x", "order-sign")]
    assert set(registry.hooks("x")) == {"order-select", "order-sign"}
    assert registry.ids() == ["x"]


def test_deprecated_ids_answer_but_are_not_listed():
    registry = ServiceRegistry([_declaration(deprecated_ids=("old-x",))])
    assert [s["id"] for s in registry.discovery()["services"]] == ["x"]
    assert registry.hooks("old-x") == registry.hooks("x")
    assert registry.is_deprecated("old-x") and not registry.is_deprecated("x")
    assert registry.ids() == ["x", "old-x"]


def test_an_id_cannot_be_both_listed_and_deprecated():
    with pytest.raises(ValueError, match="both listed and deprecated"):
        ServiceRegistry([_declaration(), _declaration(id="y", hook="order-sign", deprecated_ids=("x",))])
