"""`GET /cds-services`: the discovery document, generated from the service declarations."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

from cds_service.state import state

bp = Blueprint("discovery", __name__)


@bp.get("/cds-services")
def discovery() -> Response:
    return jsonify(state(current_app).services.discovery())
