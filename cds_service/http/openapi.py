"""`GET /openapi.json`: the OpenAPI 3.1 description of the HTTP surface.

The document is data (openapi.json beside this module); the only parts filled in at start-up are the ones the code
owns: the enum of declared service ids and the version. A test keeps the document's paths and methods equal to the
app's routes.
"""

from __future__ import annotations

import copy
from importlib import metadata, resources
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, jsonify

from cds_service.state import state

bp = Blueprint("openapi", __name__)

_DOCUMENT = orjson.loads(resources.files(__package__).joinpath("openapi.json").read_bytes())


def openapi_document(service_ids: list[str]) -> dict[str, Any]:
    """The OpenAPI document with the declared service ids and the installed package version."""
    document = copy.deepcopy(_DOCUMENT)
    document["info"]["version"] = metadata.version("cds-service")
    document["components"]["parameters"]["ServiceId"]["schema"]["enum"] = service_ids
    return document


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(state(current_app).services.ids()))
