"""The answers gunicorn itself gives before the app sees a request (a malformed request line, headers too large),
as FHIR OperationOutcomes in JSON like every other error, instead of its HTML page.

gunicorn writes those through `gunicorn.util.write_error`; `install()` replaces it in the server's processes (the
only way in: gunicorn has no hook for it). Nothing of the request is echoed back: its line or headers may carry
identifiers.
"""

from __future__ import annotations

import socket

import orjson
from gunicorn import util

_ISSUE_CODES = {400: "invalid", 403: "forbidden", 414: "too-long", 417: "not-supported", 431: "too-long",
                501: "not-supported"}
_DIAGNOSTICS = {
    400: "The request is not valid HTTP/1.1 (request line, headers or chunked body).",
    414: "The request line is longer than the server accepts.",
    431: "The request's header fields are larger than the server accepts.",
    501: "The request's Transfer-Encoding is not supported.",
}


def write_operation_outcome(sock: socket.socket, status_int: int, reason: str, mesg: str) -> None:
    body = orjson.dumps({"resourceType": "OperationOutcome", "issue": [{
        "severity": "error", "code": _ISSUE_CODES.get(status_int, "exception"),
        "diagnostics": _DIAGNOSTICS.get(status_int, f"{status_int} {reason}")}]})
    head = (f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
            f"Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n\r\n")
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install() -> None:
    util.write_error = write_operation_outcome
