"""`GET /healthz` (the process answers) and `GET /readyz` (it can do its work). No authentication, no PHI."""

from __future__ import annotations

import logging

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy.exc import SQLAlchemyError

from cds_service.http.errors import operation_outcome
from cds_service.metrics import exposition
from cds_service.storage.database import ping

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
    """Ready when the configuration, knowledge and service declarations are loaded and the database answers."""
    checks: dict[str, str] = {
        "configuration": "ok",
        "valueSets": "ok" if current_app.extensions.get("cds.value_sets") else "not compiled",
        "services": "ok" if len(current_app.extensions["cds.services"]) else "none declared",
    }
    try:
        ping(current_app.extensions["cds.database"])
        checks["database"] = "ok"
    except SQLAlchemyError as exc:
        log.warning("readiness: database unreachable", extra={"error_type": type(exc).__name__})
        checks["database"] = "unreachable"
    failing = [f"{name}: {value}" for name, value in checks.items() if value != "ok"]
    if failing:
        return operation_outcome(503, "transient", "Not ready: " + "; ".join(failing))
    return jsonify({"status": "ready", "checks": checks})
