"""Optional OpenTelemetry tracing: off by default; on, one span per hook call with a child span per FHIR read and for
the ledger write, in one trace, and no attribute carrying the patient id, a URL or the access token."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cds_service import tracing
from tests.test_backfill import PV, RECURRENT, TOKEN, FhirServer, mock, post, request_body  # noqa: F401

PATIENT = RECURRENT.expected["patientId"]


@pytest.fixture
def spans():
    exporter = InMemorySpanExporter()
    tracing.configure(None, exporter)
    yield exporter
    tracing.configure(None)


def test_tracing_is_off_unless_configured(app):
    assert tracing.current_context() is None
    with tracing.span("anything") as current:
        assert current is None


def test_a_hook_call_with_backfill_is_one_trace_without_patient_data(app, mock, spans):  # noqa: F811
    FhirServer(mock, RECURRENT.resources())
    response = post(app, request_body(drop=["conditions", "procedures"]))
    assert response.status_code == 200
    finished = spans.get_finished_spans()
    by_name: dict[str, list] = {}
    for span in finished:
        by_name.setdefault(span.name, []).append(span)
    [call] = by_name["cds.hook_call"]
    reads = by_name["fhir.read"]
    [ledger] = by_name["ledger.record"]
    assert {read.attributes["cds.prefetch_key"] for read in reads} == {"conditions", "procedures"}
    assert all(read.attributes["cds.outcome"] == "read" for read in reads)
    assert all(span.context.trace_id == call.context.trace_id for span in [*reads, ledger])
    assert all(span.parent.span_id == call.context.span_id for span in [*reads, ledger])
    assert call.attributes["cds.service"] == "fbss-miss-advisor" and call.attributes["cds.cards"] == 2
    values = [str(value) for span in finished for value in span.attributes.values()]
    assert not [value for value in values if PATIENT in value or TOKEN in value or "http" in value]


def test_a_failed_read_says_its_category(app, mock, spans):  # noqa: F811
    import re  # noqa: PLC0415

    import responses  # noqa: PLC0415

    from tests.test_backfill import BASE  # noqa: PLC0415

    mock.add(responses.GET, re.compile(re.escape(BASE) + r"/.*"), status=503)
    assert post(app, request_body(drop=["conditions"])).status_code == 412
    [read] = [span for span in spans.get_finished_spans() if span.name == "fhir.read"]
    assert read.attributes["cds.outcome"] == "http-error"
