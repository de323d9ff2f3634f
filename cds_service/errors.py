"""Errors a CDS client can be told about, each with its HTTP status and FHIR issue type.

Code anywhere on the request path raises one of these with a sentence for the integrator; the HTTP layer turns it
into an `OperationOutcome` (cds_service.http.errors). Nothing here knows about Flask.
"""

from __future__ import annotations


class CdsError(Exception):
    """Base class: `status` is the HTTP status, `issue_code` the FHIR IssueType code, the message the diagnostics."""

    status = 500
    issue_code = "exception"

    def __init__(self, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics


class InvalidRequest(CdsError):
    """The request body is not a well-formed CDS Hooks request (400)."""

    status = 400
    issue_code = "invalid"


class UnknownService(CdsError):
    """No CDS service has this id (404)."""

    status = 404
    issue_code = "not-found"


class TooLarge(CdsError):
    """The request carries more than the service evaluates (413), e.g. too many draft orders."""

    status = 413
    issue_code = "too-long"


class UnsupportedMediaType(CdsError):
    """The body is declared as something other than JSON (415)."""

    status = 415
    issue_code = "not-supported"


class AuthenticationFailed(CdsError):
    """The client JWT is missing or invalid (401). The reason is for the log, the category (a small fixed set) for the
    metrics; the client learns nothing more."""

    status = 401
    issue_code = "login"

    def __init__(self, reason: str, category: str = "claims") -> None:
        super().__init__("Authentication failed.")
        self.reason = reason
        self.category = category


class NotEnabled(CdsError):
    """The client authenticated (its JWT is valid and from a trusted issuer) but is not enabled here: its tenant is not
    on the issuer's list (403). Said plainly, so an integrator onboarding a new tenant knows what to ask for."""

    status = 403
    issue_code = "forbidden"

    def __init__(self, diagnostics: str, reason: str) -> None:
        super().__init__(diagnostics)
        self.reason = reason
        self.category = "tenant"


class PreconditionFailed(CdsError):
    """Data the service cannot do without is neither prefetched nor fetchable (412, CDS Hooks 2.0 §prefetch).
    `causes` (prefetch key -> why) are for the log when the client is told less."""

    status = 412
    issue_code = "incomplete"

    def __init__(self, diagnostics: str, causes: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics)
        self.causes = causes or {}


class ServiceUnavailable(CdsError):
    """A dependency the answer needs (the database) cannot be reached now (503 with Retry-After): the client may try
    again; nothing was recorded as answered."""

    status = 503
    issue_code = "transient"

    def __init__(self, diagnostics: str, retry_after_seconds: int = 5) -> None:
        super().__init__(diagnostics)
        self.retry_after_seconds = retry_after_seconds
