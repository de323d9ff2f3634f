"""The HTML pages (`/analytics`, the local `/sandbox`): rendered with a per-response nonce and sent with headers that
let only their own inline style and script run, keep them out of frames, and out of caches (they show what the
service answered, which may hold patient data in the sandbox)."""

from __future__ import annotations

import secrets
from typing import Any

from flask import Response, render_template


def html_page(template: str, **context: Any) -> Response:
    nonce = secrets.token_urlsafe(16)
    response = Response(render_template(template, nonce=nonce, **context), mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; connect-src 'self'; "
        "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
