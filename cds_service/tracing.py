"""Optional OpenTelemetry tracing, off unless CDS_OTLP_ENDPOINT is set: a span per hook call, with child spans per
FHIR read and for the ledger write, exported over OTLP/HTTP.

Off, it costs an attribute lookup per span and imports nothing (the OpenTelemetry packages are the `tracing` extra,
installed in the Docker image). Attributes never carry patient data: service, hook, prefetch key, card count,
outcome category, never a URL (it holds the patient id), an id or a token (tests/test_tracing.py checks it).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Tracing:
    """The process's tracer (None: off)."""

    tracer: Any = None


_tracing = _Tracing()


def configure(endpoint: str | None, exporter: Any = None) -> None:
    """Trace to `endpoint` (OTLP/HTTP), or to `exporter` (tests); neither: tracing off. Called per process: gunicorn
    workers configure again after the fork (a batch exporter's thread does not survive it)."""
    if endpoint is None and exporter is None:
        _tracing.tracer = None
        return
    from opentelemetry.sdk.resources import Resource  # noqa: PLC0415 (only with tracing on)
    from opentelemetry.sdk.trace import TracerProvider  # noqa: PLC0415
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor  # noqa: PLC0415

    provider = TracerProvider(resource=Resource.create({"service.name": "cds-service"}))
    if exporter is None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter  # noqa: PLC0415

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    else:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    _tracing.tracer = provider.get_tracer("cds_service")


@contextmanager
def span(name: str, **attributes: Any) -> Iterator[Any]:
    """A span named `name` under the current one (nothing when tracing is off); yields it, to add attributes."""
    tracer = _tracing.tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=attributes) as current:
        yield current


def current_context() -> Any:
    """The caller's trace context, to carry into a worker thread (`within`); None when tracing is off."""
    if _tracing.tracer is None:
        return None
    from opentelemetry import context  # noqa: PLC0415

    return context.get_current()


@contextmanager
def within(carried: Any) -> Iterator[None]:
    """Run the block in a trace context carried from another thread (a FHIR read in the fetch pool)."""
    if carried is None:
        yield
        return
    from opentelemetry import context  # noqa: PLC0415

    token = context.attach(carried)
    try:
        yield
    finally:
        context.detach(token)
