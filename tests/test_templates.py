"""Prefetch templates rendered with the CDS Hooks 2.0 tokens; unfillable templates are not fetched."""

from __future__ import annotations

import pytest

from cds_service.fhir.prefetch import render_template


@pytest.mark.parametrize(("template", "context", "expected"), [
    ("Patient/{{context.patientId}}", {"patientId": "p1"}, "Patient/p1"),
    ("Practitioner/{{userPractitionerId}}", {"userId": "Practitioner/doc-1"}, "Practitioner/doc-1"),
    ("PractitionerRole/{{userPractitionerRoleId}}", {"userId": "PractitionerRole/r9"}, "PractitionerRole/r9"),
    ("Patient/{{userPatientId}}", {"userId": "Patient/p2"}, "Patient/p2"),
    ("RelatedPerson/{{userRelatedPersonId}}", {"userId": "RelatedPerson/rp"}, "RelatedPerson/rp"),
    ("{{context.userId}}", {"userId": "PractitionerRole/r9"}, "PractitionerRole/r9"),
    ("Encounter/{{context.encounterId}}", {"encounterId": "e7"}, "Encounter/e7"),
])
def test_tokens_are_filled(template, context, expected):
    assert render_template(template, context) == expected


@pytest.mark.parametrize(("template", "context"), [
    ("Practitioner/{{userPractitionerId}}", {"userId": "PractitionerRole/r9"}),  # the user is not a Practitioner
    ("Encounter/{{context.encounterId}}", {"patientId": "p1"}),
    ("Condition?patient={{context.patientId}}", {"patientId": ""}),
])
def test_unfillable_templates_render_to_none(template, context):
    assert render_template(template, context) is None
