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

from cds_service.memory import TRIM_AFTER_BYTES, WorkerMemory


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

    def __init__(self, app: Callable[..., Iterable[bytes]], slot: CpuSlot, max_body_bytes: int,
                 memory: WorkerMemory | None = None) -> None:
        self.app = app
        self.slot = slot
        self.max_body_bytes = max_body_bytes
        self.memory = memory or WorkerMemory(0)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        declared = environ.get("CONTENT_LENGTH") or ""
        size = 0
        body: io.BytesIO | None = None
        if declared.isdigit() and 0 < int(declared) <= self.max_body_bytes:
            size = int(declared)
            if size > TRIM_AFTER_BYTES:
                self.memory.before_large_call()
            body = environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(size))
        elif not declared and environ.get("wsgi.input_terminated"):
            data = environ["wsgi.input"].read(self.max_body_bytes + 1)
            size = len(data)
            body = environ["wsgi.input"] = io.BytesIO(data)
            del data
        with self.slot.held():
            response = self.app(environ, start_response)
        if body is not None and size > TRIM_AFTER_BYTES:
            return _ReleasedWhenClosed(response, body, self.memory)
        return response


class _ReleasedWhenClosed:
    """A large call's response: once the server has sent and closed it, the body's buffer is let go (werkzeug's
    request and the WSGI environ refer to each other, so without this it waited for the collector) and the freed
    pages go back to the operating system. Trimming earlier, inside the call, ran while the body and the response
    were still alive, and the glibc heap kept what they held after a burst of large bodies (bench/burst.py). What
    the trim cannot give back may retire the worker (`WorkerMemory`)."""

    def __init__(self, response: Iterable[bytes], body: io.BytesIO, memory: WorkerMemory) -> None:
        self.response = response
        self.body = body
        self.memory = memory

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.response)

    def close(self) -> None:
        try:
            close = getattr(self.response, "close", None)
            if close is not None:
                close()
        finally:
            self.body.close()
            self.response = ()
            self.memory.after_large_call()
