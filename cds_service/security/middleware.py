"""Authentication of every CDS endpoint (discovery, invocation, feedback) before anything is evaluated.

Production: a valid Bearer JWT is required. Local profile (`make run`): a request without a token is accepted with a
warning, so curl and the built-in sandbox work; a token that is present is always verified. CORS preflight (OPTIONS)
never needs a token (browsers do not send one). The audience is the endpoint's external URL: CDS_PUBLIC_BASE_URL plus
the path, so a service behind a proxy checks the URL the client called.
"""

from __future__ import annotations

import logging

from flask import Flask, current_app, g, request

from cds_service.errors import AuthenticationFailed, NotEnabled
from cds_service.metrics import auth_failure
from cds_service.security.verify import TokenVerifier
from cds_service.state import state

log = logging.getLogger("cds_service.security")
PROTECTED_BLUEPRINTS = frozenset({"discovery", "invocation", "feedback", "analytics"})


def endpoint_audience() -> str:
    """The URL the client called, as it knows it: CDS_PUBLIC_BASE_URL plus the path. Only the local profile may go
    without it (the settings refuse production without it), and then the URL the request was sent to stands in."""
    base = state(current_app).settings.public_base_url or request.url_root
    return base.rstrip("/") + request.path


def install_authentication(app: Flask, verifier: TokenVerifier, *, required: bool) -> None:
    @app.before_request
    def _authenticate() -> None:
        current = request._get_current_object()  # one proxy lookup for the several reads below
        if current.method == "OPTIONS" or current.blueprint not in PROTECTED_BLUEPRINTS:
            return
        header = current.headers.get("Authorization", "")
        if not header:
            if required:
                _refuse("no Authorization header", "missing")
            log.warning("request without a client JWT accepted (local profile)",
                        extra={"request_id": g.get("request_id"), "route": current.path})
            return
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            _refuse("Authorization is not a Bearer token", "missing")
        try:
            client = verifier.verify(token.strip(), endpoint_audience())
        except AuthenticationFailed as failure:
            _refuse(failure.reason, failure.category)
        except NotEnabled as refusal:  # authenticated, not enabled here: 403 with what is wrong
            auth_failure(refusal.category)
            log.warning("client not enabled", extra={"request_id": g.get("request_id"), "reason": refusal.reason})
            raise
        g.client_iss = client.iss
        g.client_tenant = client.tenant


def _refuse(reason: str, category: str) -> None:
    auth_failure(category)
    log.warning("client authentication failed", extra={"request_id": g.get("request_id"), "reason": reason})
    raise AuthenticationFailed(reason, category)
