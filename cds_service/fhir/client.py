"""Read the data a CDS client did not prefetch from its FHIR server, within one deadline per hook request.

One pooled `requests.Session` and one small thread pool per worker process (created after gunicorn forks). Every
call carries `Authorization: Bearer <fhirAuthorization.access_token>` and `Accept: application/fhir+json`, has
connect/read timeouts capped by what remains of the deadline, and is retried once on a connection error or a
502/503/504. Search pages are followed through `link[relation=next]` up to a page cap, and only on the FHIR server's
own origin, so the token never leaves it. URLs (which carry patient ids) and tokens are never logged.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter

log = logging.getLogger("cds_service.fhir")

_RETRY_STATUSES = frozenset({502, 503, 504})
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class FetchResult:
    """The resource (a Bundle with every page's entries merged), or why it could not be had."""

    resource: dict[str, Any] | None = None
    error: str | None = None
    pages: int = 0


@dataclass(frozen=True)
class FetchPolicy:
    """Where and how the service may read: https only in production, plain http only to loopback locally."""

    production: bool
    deadline: float
    connect_timeout: float
    read_timeout: float
    max_pages: int

    def refusal(self, base_url: str, token: str | None) -> str | None:
        """Why the service must not call this FHIR server (None when it may)."""
        parts = urlsplit(base_url)
        if parts.scheme == "https" or (parts.scheme == "http" and not self.production and parts.hostname in _LOOPBACK):
            pass
        else:
            return "fhirServer must be https" + ("" if self.production else " (plain http only to loopback)")
        if token is None and self.production:
            return "no fhirAuthorization to call fhirServer with"
        return None


def same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


class FhirClient:
    """Parallel, deadline-bound reads from a FHIR server for one process."""

    def __init__(self, max_workers: int = 8) -> None:
        self._max_workers = max_workers
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._session: requests.Session | None = None
        self._pool: ThreadPoolExecutor | None = None

    def _resources(self) -> tuple[requests.Session, ThreadPoolExecutor]:
        """The session and pool of this process (gunicorn forks after start-up: never share them across workers)."""
        with self._lock:
            if self._pid != os.getpid() or self._session is None or self._pool is None:
                self._pid = os.getpid()
                self._session = requests.Session()
                adapter = HTTPAdapter(pool_connections=4, pool_maxsize=self._max_workers)
                self._session.mount("https://", adapter)
                self._session.mount("http://", adapter)
                self._pool = ThreadPoolExecutor(max_workers=self._max_workers, thread_name_prefix="fhir-fetch")
            return self._session, self._pool

    def fetch_all(self, base_url: str, token: str | None, urls: Mapping[str, str],
                  policy: FetchPolicy) -> dict[str, FetchResult]:
        """Fetch every key's URL (relative to `base_url`, or an absolute next-page URL) before the deadline."""
        if not urls:
            return {}
        session, pool = self._resources()
        headers = {"Accept": "application/fhir+json"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        read = _Read(session, base_url, headers, time.monotonic() + policy.deadline, policy)
        futures: dict[Future[FetchResult], str] = {pool.submit(read.fetch, url): key for key, url in urls.items()}
        results: dict[str, FetchResult] = {}
        pending = set(futures)
        while pending:
            remaining = read.deadline - time.monotonic()
            if remaining <= 0:
                break
            done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
            for future in done:
                results[futures[future]] = future.result()
        for future in pending:
            future.cancel()
            results[futures[future]] = FetchResult(error="timed out")
        return results


@dataclass(frozen=True)
class _Read:
    """The reads of one hook request: one session, one origin, one set of headers, one deadline."""

    session: requests.Session
    base_url: str
    headers: Mapping[str, str]
    deadline: float
    policy: FetchPolicy

    def fetch(self, url: str) -> FetchResult:
        """A read, or a search with its pages merged into one Bundle."""
        target: str | None = url if urlsplit(url).scheme else f"{self.base_url.rstrip('/')}/{url.lstrip('/')}"
        first: dict[str, Any] | None = None
        entries: list[Any] = []
        pages = 0
        while target:
            if not same_origin(target, self.base_url):
                return FetchResult(error="next page is on another server (not followed)", pages=pages)
            if pages >= self.policy.max_pages:
                return FetchResult(error=f"more than {self.policy.max_pages} pages", pages=pages)
            response, error = self._send(target)
            page, error = (None, error) if response is None else _interpret(response)
            if page is None:
                return FetchResult(error=error, pages=pages)
            pages += 1
            if page.get("resourceType") != "Bundle":
                return FetchResult(resource=page, pages=pages)
            first = first or page
            entries.extend(page.get("entry") or [])
            target = next_link(page, target)
        merged = {key: value for key, value in (first or {}).items() if key not in ("entry", "link")}
        merged["entry"] = entries
        return FetchResult(resource=merged, pages=pages)

    def _send(self, url: str) -> tuple[requests.Response | None, str | None]:
        """GET with timeouts capped by the deadline; one retry on a connection error or 502/503/504."""
        for attempt in (1, 2):
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return None, "timed out"
            timeout = (min(self.policy.connect_timeout, remaining), min(self.policy.read_timeout, remaining))
            started = time.monotonic()
            try:
                response = self.session.get(url, headers=self.headers, timeout=timeout, allow_redirects=False)
            except requests.Timeout:
                return None, "timed out"
            except requests.ConnectionError:
                if attempt == 1:
                    continue
                return None, "could not connect"
            log.info("fhir read", extra={"status": response.status_code,
                                         "duration_ms": round((time.monotonic() - started) * 1000, 1)})
            if response.status_code in _RETRY_STATUSES and attempt == 1:
                continue
            return response, None
        return None, "the FHIR server kept failing"


def _interpret(response: requests.Response) -> tuple[dict[str, Any] | None, str | None]:
    """The FHIR resource of a 200 answer, or why there is none."""
    if response.status_code in (401, 403):
        return None, f"the FHIR server refused the token (HTTP {response.status_code})"
    if response.status_code != 200:
        return None, f"the FHIR server answered HTTP {response.status_code}"
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        return None, "the FHIR server sent malformed JSON"
    if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
        return None, "the FHIR server sent something that is not a FHIR resource"
    return body, None


def next_link(bundle: Mapping[str, Any], current_url: str) -> str | None:
    """The absolute URL of a Bundle's `next` page, if any."""
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return urljoin(current_url, link["url"])
    return None
