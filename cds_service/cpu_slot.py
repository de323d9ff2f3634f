"""One call at a time runs Python in a worker; the others wait on a lock, not for the interpreter.

gunicorn's gthread workers keep a slow client from holding a whole worker (it holds a thread), but threads that all
run Python contend for the GIL, which cost a good part of the throughput and lengthened the tail against sync workers
(bench/LEDGER.md). This service's calls are CPU-bound, so each worker lets one call at a time hold the CPU
slot; the rest of a call's life — its body arriving over the network, its response going out, its FHIR reads — happens
outside it. Threads waiting for the slot sleep on a lock, which costs nothing, where threads contending for the GIL
make the running one hand it over every few milliseconds.
"""

from __future__ import annotations

import io
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from cds_service.memory import TRIM_AFTER_BYTES, release_freed_memory


class CpuSlot:
    """The slot of one worker process (the gunicorn master never holds it, so a fork copies it free). Handed over in
    arrival order: a plain lock lets the thread that just let go take it again, and the calls that lose that race wait
    several service times."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._busy = False
        self._waiting: deque[threading.Lock] = deque()
        self._holder = threading.local()

    def _acquire(self) -> None:
        with self._mutex:
            if not self._busy:
                self._busy = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        turn.acquire()  # released by the thread handing the slot over: _busy stays True

    def _release(self) -> None:
        with self._mutex:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._busy = False

    @contextmanager
    def held(self) -> Iterator[None]:
        if getattr(self._holder, "holds", False):  # re-entered (the local sandbox page calls the app in-process)
            yield
            return
        self._acquire()
        self._holder.holds = True
        try:
            yield
        finally:
            self._holder.holds = False
            self._release()

    @contextmanager
    def released(self) -> Iterator[None]:
        """Give the slot up while this thread waits on the network (a FHIR read), if it holds it."""
        if not getattr(self._holder, "holds", False):
            yield
            return
        self._holder.holds = False
        self._release()
        try:
            yield
        finally:
            self._acquire()
            self._holder.holds = True


class BufferedCalls:
    """WSGI middleware: read the request body first (however slowly the client sends it), then run the app in the
    CPU slot. The body is read up to `max_body_bytes` + 1, so a larger one is still refused by the app (413) and never
    buffered whole."""

    def __init__(self, app: Callable[..., Iterable[bytes]], slot: CpuSlot, max_body_bytes: int) -> None:
        self.app = app
        self.slot = slot
        self.max_body_bytes = max_body_bytes

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        declared = environ.get("CONTENT_LENGTH") or ""
        size = 0
        if declared.isdigit() and 0 < int(declared) <= self.max_body_bytes:
            environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(int(declared)))
            size = int(declared)
        elif not declared and environ.get("wsgi.input_terminated"):
            body = environ["wsgi.input"].read(self.max_body_bytes + 1)
            environ["wsgi.input"] = io.BytesIO(body)
            size = len(body)
        with self.slot.held():
            response = self.app(environ, start_response)
            if size > TRIM_AFTER_BYTES:  # the request's objects are freed by now: hand their pages back
                release_freed_memory()
            return response
