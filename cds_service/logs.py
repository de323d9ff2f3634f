"""Structured logging: JSON lines on standard error, and one summary line per HTTP request.

Privacy rule for every log line in the service: no request or response bodies, no access tokens or JWTs, no patient
or user identifiers. The per-request line carries only the request id, route, service id, hook, status, duration and
card count. Logging is configured by the process entry point (`cds-service serve`), not by the app factory, so tests
and embedding applications keep their own logging setup.
"""

from __future__ import annotations

import logging
import re
import sys
import time

from flask import Flask, Response, g, request
from pythonjsonlogger.orjson import OrjsonFormatter

from cds_service.ids import new_uuid

request_log = logging.getLogger("cds_service.request")

_INCOMING_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def configure_logging(level: str = "INFO") -> None:
    """Send the service's logs to standard error as one JSON object per line."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def json_formatter() -> OrjsonFormatter:
    """python-json-logger's orjson formatter: the standard-library encoder took a third of each line's time."""
    return OrjsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",  # ISO 8601, UTC
    )


def install_security_headers(app: Flask) -> None:
    """Headers on every response: no MIME sniffing; CDS answers (cards, errors) are never cached (they hold PHI)."""

    @app.after_request
    def _headers(response: Response) -> Response:
        response.headers["X-Content-Type-Options"] = "nosniff"
        if request.path.startswith("/cds-services") or response.status_code >= 400:
            response.headers["Cache-Control"] = "no-store"
        return response


def install_request_logging(app: Flask) -> None:
    """Give each request an id (an incoming `X-Request-ID` if it is sane) and log one line when it ends."""
    # Imported here, not at module level: `cds-service serve` imports this module before it sets up multiprocess
    # metrics, and prometheus-client fixes its storage when first imported.
    from cds_service.metrics import request_duration as _duration  # noqa: PLC0415

    @app.before_request
    def _start() -> None:
        incoming = request.headers.get("X-Request-ID", "")
        context = g._get_current_object()  # one proxy lookup, not one per attribute
        context.request_id = incoming if _INCOMING_REQUEST_ID.match(incoming) else new_uuid().replace("-", "")
        context.started = time.perf_counter()

    @app.after_request
    def _finish(response: Response) -> Response:
        context = g._get_current_object()
        current = request._get_current_object()
        request_id = context.get("request_id") or new_uuid().replace("-", "")
        response.headers["X-Request-ID"] = request_id
        started = context.get("started")
        duration_ms = round((time.perf_counter() - started) * 1000, 3) if started else None
        route = current.url_rule.rule if current.url_rule else None
        service = context.get("service_id")
        if request_log.isEnabledFor(logging.INFO):
            fields = {"request_id": request_id, "method": current.method, "route": route, "service": service,
                      "hook": context.get("hook"), "status": response.status_code, "duration_ms": duration_ms,
                      "cards": context.get("card_count")}
            request_log.info("request", extra={k: v for k, v in fields.items() if v is not None})
        if started is not None:
            _duration(route or "unmatched", service or "", response.status_code).observe(time.perf_counter() - started)
        return response
