"""Every error answer is a FHIR OperationOutcome (CDS Hooks 3.0 R6, applied to 2.0 as well).

One place turns exceptions into HTTP answers: the service's own `CdsError`s, Werkzeug's HTTP errors (404, 405, 413,
...) and anything unexpected (500, with the request id and never a stack trace).
"""

from __future__ import annotations

import logging

from flask import Flask, Response, g, jsonify
from sqlalchemy.exc import SQLAlchemyError
from werkzeug.exceptions import HTTPException

from cds_service.errors import AuthenticationFailed, CdsError, PreconditionFailed, ServiceUnavailable
from cds_service.metrics import dependency_unavailable
from cds_service.storage.database import is_unavailable

log = logging.getLogger("cds_service.errors")

# FHIR IssueType (http://hl7.org/fhir/issue-type) for the HTTP errors Werkzeug raises itself.
_HTTP_ISSUE_CODES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    412: "incomplete",
    413: "too-long",
    415: "not-supported",
    429: "throttled",
    503: "transient",
}

# Sentences for Werkzeug's errors: its own descriptions are HTML-flavoured prose about "the browser".
_HTTP_DIAGNOSTICS = {
    404: "No such endpoint. CDS Hooks discovery is at GET /cds-services.",
    405: "Method not allowed on this endpoint.",
    413: "Request body is larger than the configured limit (CDS_MAX_BODY_BYTES).",
}


def operation_outcome(status: int, issue_code: str, diagnostics: str, severity: str = "error") -> Response:
    """A JSON response with a one-issue OperationOutcome body."""
    body = {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": issue_code, "diagnostics": diagnostics}],
    }
    response = jsonify(body)
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on the app (not a blueprint), so routing errors such as 404 and 405 are covered."""

    @app.errorhandler(CdsError)
    def _cds_error(error: CdsError) -> Response:
        response = operation_outcome(error.status, error.issue_code, error.diagnostics)
        if isinstance(error, AuthenticationFailed):
            response.headers["WWW-Authenticate"] = "Bearer"
        if isinstance(error, ServiceUnavailable):
            response.headers["Retry-After"] = str(error.retry_after_seconds)
        if isinstance(error, PreconditionFailed) and error.causes:  # the service's own words: no PHI, no URL
            log.warning("required patient data unavailable", extra={"request_id": getattr(g, "request_id", "unknown"),
                                                                    "causes": error.causes})
        return response

    @app.errorhandler(SQLAlchemyError)
    def _database_error(error: SQLAlchemyError) -> Response:
        """The database is down, unreachable or locked past its timeout: 503, so the client retries (the replay
        check, feedback and the report all need it). Any other database error is a fault of ours: 500."""
        if not is_unavailable(error):
            return _unexpected(error)
        dependency_unavailable("database")
        log.warning("database unavailable", extra={"request_id": getattr(g, "request_id", "unknown"),
                                                   "error_type": type(error.orig or error).__name__})
        return _cds_error(ServiceUnavailable("The service's database cannot be reached; nothing was recorded. "
                                             "Try again shortly."))

    @app.errorhandler(HTTPException)
    def _http_error(error: HTTPException) -> Response:
        status = error.code or 500
        diagnostics = _HTTP_DIAGNOSTICS.get(status) or (error.description or error.name)
        response = operation_outcome(status, _HTTP_ISSUE_CODES.get(status, "processing"), diagnostics)
        for name, value in error.get_headers():
            if name.lower() == "allow":
                response.headers["Allow"] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        request_id = getattr(g, "request_id", "unknown")
        # The traceback goes to the log (which never holds request bodies); the client gets only the request id.
        log.exception("unhandled error", extra={"request_id": request_id, "error_type": type(error).__name__})
        return operation_outcome(
            500, "exception", f"Internal error; quote request id {request_id} to the service operator."
        )
