"""Read the data a CDS client did not prefetch from its FHIR server, within one deadline per hook request.

One pooled `requests.Session` per worker process (created after gunicorn forks) and one small thread pool per FHIR
server origin, so a slow or dead server holds only its own threads (`max_per_origin`), never those that calls to other
servers use; a call whose data was all prefetched never touches a pool. Every call carries `Authorization: Bearer
<fhirAuthorization.access_token>` and `Accept: application/fhir+json`, has connect/read timeouts capped by what
remains of the deadline, and is retried once on a connection error (a connect timeout included) or a 502/503/504.

The deadline holds on the wire: a read timeout bounds each `recv`, not a server that trickles one byte a second, so
every socket a read uses is registered with its hook call, and when the deadline passes the call shuts them down:
whatever thread was reading returns at once. Bodies are read with a byte cap, compressed and decompressed (a gzip
bomb is refused after `max_response_bytes` of output, not after it filled the memory). Search pages are followed
through `link[relation=next]` up to a page cap, and only on the FHIR server's own origin, so the token never leaves
it. URLs (which carry patient ids) and tokens are never logged.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import socket
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import orjson
import requests
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_errors
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from cds_service import tracing
from cds_service.cpu_slot import CpuSlot

log = logging.getLogger("cds_service.fhir")

_RETRY_STATUSES = frozenset({502, 503, 504})
class Failure(str):
    """Why data could not be had: the sentence (told to the client, logged) with a fixed `category` for the metrics
    (`cds_backfill_failures_total{reason}`), so a label is never read out of a sentence."""

    category: str

    def __new__(cls, text: str, category: str) -> Failure:
        failure = super().__new__(cls, text)
        failure.category = category
        return failure


FAILURE_CATEGORIES = frozenset({"timeout", "connection", "forbidden-address", "token-refused", "http-error",
                                "malformed", "too-large", "unreadable", "foreign-next-link", "too-many-pages",
                                "policy", "no-fhir-server"})
READ_OUTCOMES = frozenset({"timeout", "connection", "token-refused", "http-error", "malformed", "too-large",
                           "unreadable", "foreign-next-link", "too-many-pages"})
"""The failures that say what a read from fhirServer met, and so whether something listens at that address and port:
production tells the client none of them (services/patient_data.py). Policy refusals are made before any packet."""
TIMED_OUT = Failure("timed out", "timeout")
FORBIDDEN_ADDRESS = Failure("fhirServer resolves to a private, loopback or link-local address, which production does "
                            "not read from unless CDS_FHIR_ALLOWED_NETWORKS lists it", "forbidden-address")
_LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


@dataclass(frozen=True)
class FetchResult:
    """The resource (a Bundle with every page's entries merged), or why it could not be had."""

    resource: dict[str, Any] | None = None
    error: Failure | None = None
    pages: int = 0


@dataclass(frozen=True)
class FetchPolicy:
    """Where and how the service may read: https only in production, plain http only to loopback locally."""

    production: bool
    deadline: float
    connect_timeout: float
    read_timeout: float
    max_pages: int
    max_response_bytes: int = 32 * 1024 * 1024
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    def address_allowed(self, address: str) -> bool:
        """Whether the service may connect to this IP address: in production only to public addresses, or to the
        networks CDS_FHIR_ALLOWED_NETWORKS lists (an EHR's FHIR server on the hospital network). A `fhirServer` is
        chosen by whoever calls the service: without this, a call could make it read from the host's loopback
        services, cloud metadata endpoints or the internal network (server-side request forgery)."""
        if not self.production:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if ip.is_global:
            return True
        return any(ip in network for network in self.allowed_networks)

    def refusal(self, base_url: str, token: str | None) -> Failure | None:
        """Why the service must not call this FHIR server (None when it may)."""
        parts = urlsplit(base_url)
        if parts.scheme == "https" or (parts.scheme == "http" and not self.production and parts.hostname in _LOOPBACK):
            pass
        else:
            return Failure("fhirServer must be https" + ("" if self.production else " (plain http only to loopback)"),
                           "policy")
        if token is None and self.production:
            return Failure("no fhirAuthorization to call fhirServer with", "policy")
        return None


def same_origin(url: str, base_url: str) -> bool:
    a, b = urlsplit(url), urlsplit(base_url)
    return (a.scheme, a.hostname, a.port) == (b.scheme, b.hostname, b.port)


class FhirClient:
    """Parallel, deadline-bound reads from FHIR servers for one process."""

    MAX_ORIGINS = 32  # pools kept for this many FHIR servers; the least recently used one beyond is let go

    def __init__(self, max_per_origin: int = 4, cpu_slot: CpuSlot | None = None) -> None:
        self._max_per_origin = max_per_origin
        self._cpu_slot = cpu_slot or CpuSlot()
        self._lock = threading.Lock()
        self._pid: int | None = None
        self._session: requests.Session | None = None
        self._pools: OrderedDict[tuple[str, str | None, int | None], ThreadPoolExecutor] = OrderedDict()

    def _resources(self, base_url: str) -> tuple[requests.Session, ThreadPoolExecutor]:
        """The session of this process and the pool of this origin (gunicorn forks after start-up: never share them
        across workers)."""
        parts = urlsplit(base_url)
        origin = (parts.scheme, parts.hostname, parts.port)
        with self._lock:
            if self._pid != os.getpid() or self._session is None:
                self._pid = os.getpid()
                self._pools = OrderedDict()
                self._session = requests.Session()
                adapter = HTTPAdapter(pool_connections=self.MAX_ORIGINS, pool_maxsize=self._max_per_origin)
                adapter.poolmanager.pool_classes_by_scheme = {"http": _TrackedPool, "https": _TrackedTlsPool}
                self._session.mount("https://", adapter)
                self._session.mount("http://", adapter)
            pool = self._pools.get(origin)
            if pool is None:
                pool = ThreadPoolExecutor(max_workers=self._max_per_origin, thread_name_prefix="fhir-fetch")
                self._pools[origin] = pool
                if len(self._pools) > self.MAX_ORIGINS:
                    _, oldest = self._pools.popitem(last=False)
                    oldest.shutdown(wait=False)  # its running reads end at their own deadlines
            self._pools.move_to_end(origin)
            return self._session, pool

    def fetch_all(self, base_url: str, token: str | None, urls: Mapping[str, str],
                  policy: FetchPolicy) -> dict[str, FetchResult]:
        """Fetch every key's URL (relative to `base_url`, or an absolute next-page URL) before the deadline; what is
        not back by then is cancelled on the wire and counts as timed out."""
        if not urls:
            return {}
        session, pool = self._resources(base_url)
        headers = {"Accept": "application/fhir+json", "Accept-Encoding": "gzip, deflate"}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        read = _Read(session, base_url, headers, time.monotonic() + policy.deadline, policy)
        carried = tracing.current_context()
        futures: dict[Future[FetchResult], str] = {pool.submit(read.fetch, url, key, carried): key
                                                   for key, url in urls.items()}
        results: dict[str, FetchResult] = {}
        pending = set(futures)
        try:
            with self._cpu_slot.released():  # waiting on the network: another call may use the CPU meanwhile
                while pending:
                    remaining = read.deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
                    for future in done:
                        results[futures[future]] = future.result()
        finally:
            read.cancel()  # every socket still in use is shut down: no thread reads on past the deadline
        for future in pending:
            future.cancel()
            results[futures[future]] = FetchResult(error=TIMED_OUT)
        return results


_current = threading.local()  # the _Read a fetch thread is working for, so its connections can register sockets


def _track(sock: socket.socket | None) -> None:
    read = getattr(_current, "read", None)
    if sock is not None and read is not None:
        read.register(sock)


class ForbiddenAddress(OSError):
    """fhirServer resolves to an address the policy does not allow (never connected to)."""


class _Vetted:
    """Connects only to an address the fetch policy allows, vetted after name resolution and before any packet is
    sent (the address vetted is the one connected to: no second lookup a rebinding DNS could answer differently);
    registers the socket with the hook call, to be shut down at its deadline."""

    _dns_host: str
    port: int
    sock: socket.socket | None

    def _new_conn(self) -> socket.socket:
        read = getattr(_current, "read", None)
        if read is not None and read.policy.production:
            try:
                infos = socket.getaddrinfo(self._dns_host, self.port, type=socket.SOCK_STREAM)
            except socket.gaierror:
                infos = []
            addresses = [str(info[4][0]) for info in infos]
            if not addresses or not all(read.policy.address_allowed(a) for a in addresses):
                read.forbidden = True
                raise ForbiddenAddress("fhirServer address not allowed")
            self._dns_host = addresses[0]
        return super()._new_conn()  # type: ignore[misc]

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _track(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _track(self.sock)  # a kept-alive connection: connect() is not called again
        super().request(*args, **kwargs)  # type: ignore[misc]


class _TrackedConnection(_Vetted, HTTPConnection):
    pass


class _TrackedTlsConnection(_Vetted, HTTPSConnection):
    pass


class _TrackedPool(HTTPConnectionPool):
    ConnectionCls = _TrackedConnection


class _TrackedTlsPool(HTTPSConnectionPool):
    ConnectionCls = _TrackedTlsConnection


class ResponseTooLarge(Exception):
    """A FHIR response (or its decompressed form) passed the byte cap."""


@dataclass
class _Read:
    """The reads of one hook request: one session, one origin, one set of headers, one deadline, and the sockets in
    use, to shut down when the deadline passes."""

    session: requests.Session
    base_url: str
    headers: Mapping[str, str]
    deadline: float
    policy: FetchPolicy
    cancelled: bool = False
    forbidden: bool = False
    _sockets: set[socket.socket] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, sock: socket.socket) -> None:
        with self._lock:
            if not self.cancelled:
                self._sockets.add(sock)
                _current.sockets.append(sock)
                return
        _shut(sock)

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            sockets, self._sockets = self._sockets, set()
        for sock in sockets:
            _shut(sock)

    def fetch(self, url: str, key: str = "", carried: Any = None) -> FetchResult:
        """A read, or a search with its pages merged into one Bundle (in a pool thread), traced as a child of the
        hook call's span (by prefetch key: the URL holds the patient id)."""
        with tracing.within(carried), tracing.span("fhir.read", **{"cds.prefetch_key": key}) as current:
            result = self._fetch_guarded(url)
            if current is not None:
                current.set_attribute("cds.outcome", result.error.category if result.error is not None else "read")
                current.set_attribute("cds.pages", result.pages)
            return result

    def _fetch_guarded(self, url: str) -> FetchResult:
        _current.read, _current.sockets = self, []
        try:
            return self._fetch(url)
        except Exception as exc:  # whatever a server's bytes provoke is a failed read, never the call's 500
            log.warning("fhir read failed", extra={"error_type": type(exc).__name__})
            return FetchResult(error=Failure(f"the FHIR server's answer could not be read ({type(exc).__name__})",
                                              "unreadable"))
        finally:
            with self._lock:  # done with them: a kept-alive socket may serve another call next
                self._sockets.difference_update(_current.sockets)
            _current.read, _current.sockets = None, []

    def _fetch(self, url: str) -> FetchResult:
        target: str | None = url if urlsplit(url).scheme else f"{self.base_url.rstrip('/')}/{url.lstrip('/')}"
        first: dict[str, Any] | None = None
        entries: list[Any] = []
        pages = 0
        while target:
            if not same_origin(target, self.base_url):
                return FetchResult(error=Failure("next page is on another server (not followed)", "foreign-next-link"),
                                   pages=pages)
            if pages >= self.policy.max_pages:
                return FetchResult(error=Failure(f"more than {self.policy.max_pages} pages", "too-many-pages"),
                                   pages=pages)
            page, error = self._send(target)
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

    def _send(self, url: str) -> tuple[dict[str, Any] | None, Failure | None]:
        """GET with timeouts capped by the deadline; one retry on a connection error (a connect timeout included)
        or 502/503/504."""
        for attempt in (1, 2):
            remaining = self.deadline - time.monotonic()
            if remaining <= 0 or self.cancelled:
                return None, TIMED_OUT
            timeout = (min(self.policy.connect_timeout, remaining), min(self.policy.read_timeout, remaining))
            started = time.monotonic()
            try:
                response = self.session.get(url, headers=self.headers, timeout=timeout, allow_redirects=False,
                                            stream=True)
            except requests.RequestException as exc:
                # A connection error is retried once, a connect timeout included (requests.ConnectTimeout is both a
                # Timeout and a ConnectionError); a read timeout is not: the server is there, and slow.
                if self.forbidden:  # the same answer whatever is (or is not) listening there
                    return None, FORBIDDEN_ADDRESS
                retry = isinstance(exc, requests.ConnectTimeout) or (
                    isinstance(exc, requests.ConnectionError) and not isinstance(exc, requests.Timeout))
                if retry and attempt == 1 and not self.cancelled:
                    continue
                timed_out = isinstance(exc, requests.Timeout) or self.cancelled
                return None, TIMED_OUT if timed_out else Failure("could not connect", "connection")
            with response:
                log.info("fhir read", extra={"status": response.status_code,
                                             "duration_ms": round((time.monotonic() - started) * 1000, 1)})
                if response.status_code in _RETRY_STATUSES and attempt == 1:
                    continue
                return self._interpret(response)
        return None, Failure("the FHIR server kept failing", "http-error")

    def _interpret(self, response: requests.Response) -> tuple[dict[str, Any] | None, Failure | None]:
        """The FHIR resource of a 200 answer, or why there is none."""
        if response.status_code in (401, 403):
            return None, Failure(f"the FHIR server refused the token (HTTP {response.status_code})", "token-refused")
        if response.status_code != 200:
            return None, Failure(f"the FHIR server answered HTTP {response.status_code}", "http-error")
        content, error = self._content(response)
        if content is None:
            return None, error
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            return None, Failure("the FHIR server sent malformed JSON", "malformed")
        if not isinstance(body, dict) or not isinstance(body.get("resourceType"), str):
            return None, Failure("the FHIR server sent something that is not a FHIR resource", "malformed")
        return body, None

    def _content(self, response: requests.Response) -> tuple[bytes | None, Failure | None]:
        try:
            content = self._body(response)
        except ResponseTooLarge:
            return None, Failure(f"the FHIR server's answer is larger than {self.policy.max_response_bytes} bytes",
                                 "too-large")
        except (requests.RequestException, urllib3_errors.HTTPError, OSError, zlib.error) as exc:
            if self.cancelled or time.monotonic() >= self.deadline:
                return None, TIMED_OUT
            return None, Failure(f"the FHIR server's answer could not be read ({type(exc).__name__})",
                                 "unreadable")
        return (content, None) if content is not None else (None, TIMED_OUT)

    def _body(self, response: requests.Response) -> bytes | None:
        """The decoded body, read in chunks under the byte cap and the deadline (None once the deadline passed)."""
        limit = self.policy.max_response_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise ResponseTooLarge
        decoder = _Decoder(response.headers.get("Content-Encoding", ""), limit)
        received = 0
        for chunk in response.raw.stream(65536, decode_content=False):
            if self.cancelled or time.monotonic() >= self.deadline:
                return None
            received += len(chunk)
            if received > limit:
                raise ResponseTooLarge
            decoder.feed(chunk)
        return decoder.result()


class _Decoder:
    """Content-Encoding undone with a cap on the output: zlib is asked for at most what is left under the cap, so a
    bomb stops at the cap instead of after it filled the memory. Concatenated gzip members are read as one body."""

    def __init__(self, encoding: str, limit: int) -> None:
        encoding = encoding.strip().lower()
        if encoding in ("", "identity"):
            self._wbits: int | None = None
        elif encoding in ("gzip", "x-gzip"):
            self._wbits = 16 + zlib.MAX_WBITS
        elif encoding == "deflate":
            self._wbits = zlib.MAX_WBITS
        else:
            raise OSError(f"unsupported Content-Encoding {encoding!r}")
        self._limit = limit
        self._out = bytearray()
        self._zlib = zlib.decompressobj(self._wbits) if self._wbits is not None else None

    def feed(self, chunk: bytes) -> None:
        if self._zlib is None:
            self._out += chunk
        else:
            while chunk:
                self._out += self._zlib.decompress(chunk, self._limit + 1 - len(self._out))
                if len(self._out) > self._limit or self._zlib.unconsumed_tail:
                    raise ResponseTooLarge
                chunk = self._zlib.unused_data if self._zlib.eof else b""
                if self._zlib.eof:
                    self._zlib = zlib.decompressobj(self._wbits)  # the next gzip member, if any
        if len(self._out) > self._limit:
            raise ResponseTooLarge

    def result(self) -> bytes:
        return bytes(self._out)


def _shut(sock: socket.socket) -> None:
    """Wake whatever thread reads this socket (shutdown, unlike close, ends a blocked recv at once)."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def next_link(bundle: Mapping[str, Any], current_url: str) -> str | None:
    """The absolute URL of a Bundle's `next` page, if any."""
    for link in bundle.get("link") or ():
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return urljoin(current_url, link["url"])
    return None
