"""`GET /healthz` (the process answers) and `GET /readyz` (it can do its work). No authentication, no PHI."""

from __future__ import annotations

import logging
from functools import cache

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from cds_service.http.errors import operation_outcome
from cds_service.metrics import exposition
from cds_service.state import state
from cds_service.storage.migrate import current_revision, head_revision

bp = Blueprint("health", __name__)
log = logging.getLogger("cds_service.health")


@bp.get("/healthz")
def healthz() -> Response:
    return jsonify({"status": "ok"})


@bp.get("/metrics")
def metrics() -> Response:
    """Prometheus metrics (no authentication, no patient data: restrict at the proxy if it must not be public)."""
    body, content_type = exposition()
    return Response(body, content_type=content_type)


@bp.get("/readyz")
def readyz() -> Response:
    """Ready when the service can answer hook calls and record every card it answers with: configuration, knowledge
    and declarations loaded; the ledger's spool writable and not full; the database reachable and migrated. The
    local profile stays ready while the database is away (cards go to the spool and land later); production does not,
    because the client-token replay check needs the database (503 for every call meanwhile)."""
    app = current_app
    checks: dict[str, str] = {
        "configuration": "ok",
        "valueSets": "ok" if state(app).value_sets else "not compiled",
        "services": "ok" if len(state(app).services) else "none declared",
    }
    ledger = state(app).ledger
    checks["ledger"] = ledger.problem() or "ok"
    database = state(app).database
    degraded: list[str] = []
    try:
        revision = current_revision(database)
        checks["database"] = "ok" if revision == _head() else f"schema at {revision}, not {_head()} (migrate)"
    except SQLAlchemyError as exc:
        log.warning("readiness: database unreachable", extra={"error_type": type(exc).__name__})
        if state(app).settings.is_production:
            checks["database"] = "unreachable (client tokens cannot be checked for replay)"
        else:
            checks["database"] = "degraded"
            degraded.append("database unreachable: cards are kept in the spool until it returns")
    failing = [f"{name}: {value}" for name, value in checks.items() if value not in ("ok", "degraded")]
    if failing:
        response = operation_outcome(503, "transient", "Not ready: " + "; ".join(failing))
        response.headers["Retry-After"] = "5"
        return response
    return jsonify({"status": "degraded" if degraded else "ready", "checks": checks, "degraded": degraded,
                    "ledger": ledger.status()})


@cache
def _head() -> str | None:
    return head_revision()
