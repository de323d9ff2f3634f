"""`GET /cds-services`: the discovery document, generated from the service declarations."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify

bp = Blueprint("discovery", __name__)


@bp.get("/cds-services")
def discovery() -> Response:
    return jsonify(current_app.extensions["cds.services"].discovery())
