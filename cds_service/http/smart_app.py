"""`/smart/…`: the evidence app, a SMART on FHIR app the service serves (files in cds_service/smart/).

Static files and one generated one, `config.json` (the client id and scopes the app asks for, from the settings, so
the same files serve every EHR the app is registered with). No token is needed: the app holds no data; it reads the
EHR's FHIR server in the browser with the token its launch gives it. Framing is allowed (EHRs show apps in a frame);
scripts and styles come only from here; the app may connect to any FHIR server.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

from flask import Blueprint, Response, current_app, jsonify
from werkzeug.exceptions import NotFound

from cds_service.state import state

bp = Blueprint("smart_app", __name__)

_FILES = {"launch.html": "text/html", "index.html": "text/html", "launch.js": "text/javascript",
          "evidence.js": "text/javascript", "evidence.css": "text/css",
          "fhir-client.pure.min.js": "text/javascript", "fhir-client.LICENSE.txt": "text/plain"}
# What the app reads (patient/…​.read, SMART App Launch 1.0 scopes), and the launch context it needs.
_READS = ("Patient", "Condition", "Procedure", "ImagingStudy", "DiagnosticReport", "ServiceRequest",
          "MedicationRequest", "MedicationStatement")
_SCOPES = " ".join(f"patient/{kind}.read" for kind in _READS)
_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src *; "
           "frame-ancestors *; base-uri 'none'; form-action 'none'")


@cache
def _file(name: str) -> bytes:
    """One of the app's files (a name from _FILES), read once per process: they change only with the package."""
    return resources.files("cds_service").joinpath("smart", name).read_bytes()


@bp.get("/smart/config.json")
def config() -> Response:
    response = jsonify({"clientId": state(current_app).settings.smart_client_id,
                        "ehrScope": f"launch openid fhirUser {_SCOPES}",
                        "standaloneScope": f"launch/patient openid fhirUser {_SCOPES}"})
    response.headers["Content-Security-Policy"] = _POLICY
    return response


@bp.get("/smart/<name>")
def app_file(name: str) -> Response:
    mimetype = _FILES.get(name)
    if mimetype is None:
        raise NotFound()
    response = Response(_file(name), mimetype=mimetype)
    response.headers["Content-Security-Policy"] = _POLICY
    response.headers["Cache-Control"] = "no-cache"
    return response
