"""GET /metrics: Prometheus counters and histograms of the service, with no patient data in any label."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families

from cds_service.fixtures import find_fixture
from cds_service.services import patient_view
from cds_service.state import state
from tests.issuer import bearer
from tests.support import hook_request

PV = "/cds-services/fbss-miss-advisor"


def samples(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    text = response.get_data(as_text=True)
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}, text


def value(all_samples, name, **labels) -> float:
    return all_samples[0].get((name, tuple(sorted(labels.items()))), 0.0)


def test_hook_calls_are_counted_without_patient_data(app):
    client = app.test_client()
    before = samples(client)
    fixture = find_fixture("recurrent-herniation")
    state(app).clock = lambda: fixture.anchor
    body = fixture.hook_request(patient_view.SERVICE.prefetch, fixture.anchor)
    assert client.post(PV, json=body).status_code == 200
    missing = hook_request(patient_id="secret-patient-991")
    del missing["prefetch"]["conditions"]
    assert client.post(PV, json=missing).status_code == 412
    assert client.post(PV, json=hook_request(), headers=bearer("not-a-jwt")).status_code == 401
    after = samples(client)
    assert value(after, "cds_cards_issued_total", card_type="fbss-imaging") == \
        value(before, "cds_cards_issued_total", card_type="fbss-imaging") + 1
    assert value(after, "cds_precondition_failed_total") == value(before, "cds_precondition_failed_total") + 1
    assert value(after, "cds_auth_failures_total", reason="malformed") == \
        value(before, "cds_auth_failures_total", reason="malformed") + 1
    assert value(after, "cds_prefetch_keys_total", outcome="prefetched") >= \
        value(before, "cds_prefetch_keys_total", outcome="prefetched") + 9
    assert value(after, "cds_prefetch_keys_total", outcome="unavailable") >= 1
    count = value(after, "cds_request_duration_seconds_count", route="/cds-services/<service_id>",
                  service="fbss-miss-advisor", status="200")
    assert count >= 1
    text = after[1]
    assert "secret-patient-991" not in text and fixture.patient_id not in text
    assert not re.search(r'patient|Patient/', text.split("# HELP")[0])
