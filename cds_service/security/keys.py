"""Signing keys of the trusted issuers, selected by `kid`; remote JWK Sets cached and refreshed sparingly.

A remote JWKS (an issuer's `jwks_uri`, or an allow-listed `jku`) is fetched with short timeouts and cached; a token
with an unknown `kid` triggers at most one refetch per refresh interval (key rotation), so a flood of bad tokens
cannot make the service hammer the issuer.

An issuer may serve its allowed `jku` URLs itself (`jku_list_uri`, as some EHR vendors do for their tenants' key sets).
That list is fetched at first use, again when a token names a `jku` not on it (at most once per refresh interval),
and again once it is older than JKU_LIST_MAX_AGE_SECONDS, so a URL the issuer removes stops being honoured within that
time. Only https URLs on it count. A failed fetch keeps the list last fetched (an issuer's outage does not lock its
clients out); with none fetched yet, only the configured `jku` URLs are honoured.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import orjson
import requests
from jwt import PyJWK
from jwt.exceptions import PyJWTError

from cds_service.security.issuers import TrustedIssuer

log = logging.getLogger("cds_service.security")

JKU_LIST_MAX_AGE_SECONDS = 3600.0
_JKU_LIST_MAX_URLS = 1000
MAX_KEY_DOCUMENT_BYTES = 1 << 20
"""Largest JWK Set or jku list read: a key document is a few KB; a larger answer is refused, not held in memory."""


class KeyStore:
    def __init__(self, min_refresh_seconds: float = 60.0, timeout_seconds: float = 2.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.min_refresh_seconds = min_refresh_seconds
        self.timeout_seconds = timeout_seconds
        self.clock = clock
        self._lock = threading.Lock()
        self._remote: dict[str, tuple[float, dict[str, PyJWK]]] = {}
        self._static: dict[int, tuple[TrustedIssuer, dict[str, PyJWK]]] = {}
        self._jku_lists: dict[str, tuple[float, frozenset[str]]] = {}

    def jku_allowed(self, issuer: TrustedIssuer, jku: str) -> bool:
        """Whether a token's `jku` is one the issuer's keys may be fetched from: configured, or on its served list."""
        if jku in issuer.jku:
            return True
        url = issuer.jku_list_uri
        if url is None:
            return False
        with self._lock:
            fetched_at, listed = self._jku_lists.get(url, (None, frozenset()))
            now = self.clock()
            if fetched_at is None or now - fetched_at >= JKU_LIST_MAX_AGE_SECONDS or (
                    jku not in listed and now - fetched_at >= self.min_refresh_seconds):
                fetched = self._fetch_jku_list(url)
                self._jku_lists[url] = (now, listed if fetched is None else fetched)
                listed = self._jku_lists[url][1]
            return jku in listed

    def _fetch_jku_list(self, url: str) -> frozenset[str] | None:
        """The https URLs an issuer's jku list names (a JSON array, or an object with a `jku` array); None if failed."""
        try:
            document = self._get_json(url)
        except (requests.RequestException, ValueError) as exc:
            log.warning("jku list fetch failed", extra={"jku_list_url": url, "error_type": type(exc).__name__})
            return None
        urls = document.get("jku") if isinstance(document, dict) else document
        if not isinstance(urls, list):
            log.warning("jku list is not a list of URLs", extra={"jku_list_url": url})
            return None
        return frozenset(u for u in urls[:_JKU_LIST_MAX_URLS] if isinstance(u, str) and u.startswith("https://"))

    def key(self, issuer: TrustedIssuer, kid: str, jku: str | None) -> PyJWK | None:
        """The issuer's key `kid`, from its static JWKS, its jwks_uri, or an allow-listed jku; None if unknown."""
        if jku is not None and not self.jku_allowed(issuer, jku):
            return None  # never fetched: only allow-listed jku URLs are honoured
        if issuer.jwks is not None:
            found = self._static_keys(issuer).get(kid)
            if found is not None:
                return found
        url = jku or issuer.jwks_uri
        if url is None:
            return None
        return self._remote_keys(url, kid)

    def _static_keys(self, issuer: TrustedIssuer) -> dict[str, PyJWK]:
        """An issuer's configured keys, loaded once: a PyJWK built per request parsed the key and, for EC, checked its
        point on every call. Keyed by the issuer object, which lives as long as the configuration."""
        keys = self._static.get(id(issuer))
        if keys is None or keys[0] is not issuer:
            keys = (issuer, _usable(_by_kid(issuer.jwks)))
            with self._lock:
                self._static[id(issuer)] = keys
        return keys[1]

    def _remote_keys(self, url: str, kid: str) -> PyJWK | None:
        with self._lock:
            fetched_at, keys = self._remote.get(url, (0.0, {}))
            if kid in keys:
                return keys[kid]
            if self.clock() - fetched_at < self.min_refresh_seconds and url in self._remote:
                return None  # refreshed recently: an unknown kid does not trigger another fetch
            keys = self._fetch(url)
            self._remote[url] = (self.clock(), keys)
            return keys.get(kid)

    def _get_json(self, url: str) -> Any:
        with requests.get(url, timeout=self.timeout_seconds, headers={"Accept": "application/json"},
                          stream=True) as response:
            response.raise_for_status()
            return _read_json(response)

    def _fetch(self, url: str) -> dict[str, PyJWK]:
        try:
            return _usable(_by_kid(self._get_json(url)))
        except (requests.RequestException, ValueError) as exc:
            log.warning("JWKS fetch failed", extra={"jwks_url": url, "error_type": type(exc).__name__})
            return {}


def _read_json(response: requests.Response) -> Any:
    """The JSON document of a response, read to at most MAX_KEY_DOCUMENT_BYTES (after decompression)."""
    body = response.raw.read(MAX_KEY_DOCUMENT_BYTES + 1, decode_content=True)
    if len(body) > MAX_KEY_DOCUMENT_BYTES:
        raise ValueError(f"document larger than {MAX_KEY_DOCUMENT_BYTES} bytes")
    return orjson.loads(body)


def _by_kid(jwks: Any) -> dict[str, dict[str, Any]]:
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    return {k["kid"]: k for k in keys or () if isinstance(k, dict) and isinstance(k.get("kid"), str)}


def _usable(jwks_by_kid: dict[str, dict[str, Any]]) -> dict[str, PyJWK]:
    """The keys PyJWT can use, by kid; an unusable one is logged and left out (as if unknown)."""
    usable = {}
    for kid, data in jwks_by_kid.items():
        try:
            usable[kid] = PyJWK(data)
        except PyJWTError:  # PyJWKError, or InvalidKeyError for a malformed key
            log.warning("unusable JWK", extra={"kid": kid})
    return usable
