"""The CDS Hooks 2.0 request: checked once, then handed on as a plain value nothing changes.

The checks are the ones the specification makes REQUIRED (CDS Hooks 2.0, 'HTTP Request'); everything
else a client may send (unknown fields, `extension`) is ignored, so clients of later versions still work. The body
is not re-walked: prefetch values are only checked for being `null` or an object with a `resourceType`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cds_service.errors import InvalidRequest
from cds_service.hooks.contexts import HOOK_CONTEXTS, ContextField, Shape

log = logging.getLogger("cds_service.hooks")

# `Type/id` with a FHIR resource type and id (ids: 1-64 of [A-Za-z0-9-.]); the hooks' invariant ord-1.
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_OPTIONAL_AUTHORIZATION_FIELDS = {"expires_in": int, "scope": str, "subject": str}


@dataclass(frozen=True)
class FhirAuthorization:
    """The bearer token the client lends for its FHIR server. Transient: never logged, stored or reused (A2)."""

    access_token: str
    token_type: str
    expires_in: int | None
    scope: str | None
    subject: str | None
    patient: str | None = None

    def __repr__(self) -> str:  # keeps the token out of tracebacks and debug output
        return f"FhirAuthorization(token_type={self.token_type!r}, scope={self.scope!r}, access_token=<redacted>)"


# Built for every request: not frozen, __init__ written out (why: above ConditionEntry in fhir/record.py).
@dataclass
class HookRequest:
    """A checked hook call. `prefetch` maps each key the client sent to a resource dict or `None`."""

    hook: str
    hook_instance: str
    context: Mapping[str, Any]
    prefetch: Mapping[str, dict[str, Any] | None]
    fhir_server: str | None = None
    fhir_authorization: FhirAuthorization | None = None

    def __init__(self, hook: str, hook_instance: str, context: Mapping[str, Any],  # noqa: PLR0917 (the fields, in order)
                 prefetch: Mapping[str, dict[str, Any] | None], fhir_server: str | None = None,
                 fhir_authorization: FhirAuthorization | None = None) -> None:
        self.hook = hook
        self.hook_instance = hook_instance
        self.context = context
        self.prefetch = prefetch
        self.fhir_server = fhir_server
        self.fhir_authorization = fhir_authorization

    @property
    def patient_id(self) -> str:
        return self.context["patientId"]

    @property
    def user_id(self) -> str:
        return self.context["userId"]


def parse_hook_request(body: Any, expected_hook: str) -> HookRequest:
    """Check a parsed request body against the CDS Hooks 2.0 request and the context of `expected_hook`.

    Raises `InvalidRequest` with a sentence naming the first problem found.
    """
    if not isinstance(body, dict):
        raise InvalidRequest("The request body must be a JSON object (a CDS Hooks request).")

    hook = _required_string(body, "hook")
    if hook != expected_hook:
        raise InvalidRequest(f"This service answers the '{expected_hook}' hook, but the request is for '{hook}'.")
    hook_instance = _required_string(body, "hookInstance")
    if not _UUID.match(hook_instance):
        # The spec says UUID, but rejecting other unique strings would break clients for no safety gain (TOL).
        log.info("hookInstance is not a UUID", extra={"hook": hook})

    context = body.get("context")
    if not isinstance(context, dict):
        raise InvalidRequest("'context' is required and must be a JSON object.")
    for field in HOOK_CONTEXTS[expected_hook]:
        _check_context_field(context, field)

    fhir_server = body.get("fhirServer")
    if fhir_server is not None and (not isinstance(fhir_server, str) or not fhir_server.startswith(("https://",
                                                                                                   "http://"))):
        raise InvalidRequest("'fhirServer' must be an absolute http(s) URL.")
    authorization = _fhir_authorization(body.get("fhirAuthorization"), fhir_server)

    return HookRequest(
        hook=hook,
        hook_instance=hook_instance,
        context=context,
        prefetch=_prefetch(body.get("prefetch")),
        fhir_server=fhir_server.rstrip("/") if fhir_server else None,
        fhir_authorization=authorization,
    )


def _required_string(body: dict[str, Any], name: str) -> str:
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise InvalidRequest(f"'{name}' is required and must be a non-empty string.")
    return value


def _check_context_field(context: dict[str, Any], field: ContextField) -> None:
    value = context.get(field.name)
    if value is None:
        if field.required:
            raise InvalidRequest(f"'context.{field.name}' is required ({field.shape.value}).")
        return
    if field.shape is Shape.REFERENCE:
        valid = isinstance(value, str) and bool(_REFERENCE.match(value))
    elif field.shape is Shape.ID:
        valid = isinstance(value, str) and bool(_ID.match(value))
    elif field.shape is Shape.REFERENCES:
        valid = isinstance(value, list) and all(isinstance(v, str) and _REFERENCE.match(v) for v in value)
    else:  # Shape.BUNDLE
        valid = isinstance(value, dict) and value.get("resourceType") == "Bundle"
    if not valid:
        raise InvalidRequest(f"'context.{field.name}' must be {field.shape.value}.")


def _fhir_authorization(value: Any, fhir_server: str | None) -> FhirAuthorization | None:
    """The token the client lends, or None. Lenient where clients differ: the public CDS Hooks Sandbox copies an OAuth
    token response, where `expires_in` is only recommended, and a call whose data is all prefetched needs no token at
    all. So an authorization without a usable bearer token (no `access_token`, another `token_type`, not an object) is
    treated as no token — required data that is not prefetched then gets 412, never the whole call a 400 — and a
    missing `expires_in`, `scope` or `subject` is tolerated. Each is logged by field name, never by value."""
    if value is None:
        return None
    if fhir_server is None:
        raise InvalidRequest("'fhirServer' is required when 'fhirAuthorization' is given.")
    if not isinstance(value, dict):
        log.info("fhirAuthorization is not an object; treated as no token")
        return None
    token, token_type = value.get("access_token"), value.get("token_type", "Bearer")
    if not isinstance(token, str) or not token or not isinstance(token_type, str) or token_type.lower() != "bearer":
        log.info("fhirAuthorization has no usable bearer token; treated as no token",
                 extra={"missing": [name for name in ("access_token", "token_type") if not value.get(name)]})
        return None
    optional = {name: item if isinstance(item, kind) and not isinstance(item, bool) and item != "" else None
                for name, kind in _OPTIONAL_AUTHORIZATION_FIELDS.items() for item in (value.get(name),)}
    absent = [name for name, item in optional.items() if item is None]
    if absent:
        log.info("fhirAuthorization without some fields; the token is used", extra={"missing": absent})
    patient = value.get("patient")
    return FhirAuthorization(
        access_token=token,
        token_type=token_type,
        expires_in=optional["expires_in"],  # type: ignore[arg-type]
        scope=optional["scope"],  # type: ignore[arg-type]
        subject=optional["subject"],  # type: ignore[arg-type]
        patient=patient if isinstance(patient, str) else None,
    )


def _prefetch(value: Any) -> dict[str, dict[str, Any] | None]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidRequest("'prefetch' must be a JSON object mapping keys to FHIR resources or null.")
    satisfied: dict[str, dict[str, Any] | None] = {}
    for key, item in value.items():
        if item is None or (isinstance(item, dict) and isinstance(item.get("resourceType"), str)):
            satisfied[key] = item
        else:
            # P9: a value that is neither null nor a resource (the 2.0 spec's own example sends "user": "123")
            # is treated as not satisfied: the key is fetched from the FHIR server, or answered with 412 if needed.
            log.info("prefetch value is not a FHIR resource; treated as not satisfied", extra={"prefetch_key": key})
    return satisfied
