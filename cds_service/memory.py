"""Give memory back to the operating system after a large request.

A large request body decodes into many objects of a few hundred bytes; once they are freed, glibc keeps the pages in
its heap for reuse rather than returning them, so a worker that served a burst of large bodies stayed larger for
good (bench/BURST.md). `malloc_trim(0)` returns the free pages; it costs a few milliseconds, so it runs
only after a request whose body passed `TRIM_AFTER_BYTES`. Where the C library has no `malloc_trim` (musl, macOS)
this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
from collections.abc import Callable

TRIM_AFTER_BYTES = 1024 * 1024


M_ARENA_MAX = -8  # glibc's mallopt parameter


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _malloc_trim() -> Callable[[], None]:
    trim = getattr(_libc(), "malloc_trim", None)
    if trim is None:
        return lambda: None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


release_freed_memory = _malloc_trim()


def limit_malloc_arenas(arenas: int = 2) -> None:
    """At most `arenas` glibc heaps per process. glibc gives threads heaps of their own (up to 8 per core), each
    keeping freed pages; with one call at a time doing the work in a worker (cpu_slot.py) more buys nothing. Call
    before the worker's threads start."""
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is not None:
        mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
        mallopt.restype = ctypes.c_int
        mallopt(M_ARENA_MAX, arenas)


_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int:
    """This process's resident memory (VmRSS) from `/proc/self/statm`, or 0 where there is no /proc."""
    try:
        descriptor = os.open("/proc/self/statm", os.O_RDONLY)
    except OSError:
        return 0
    try:
        return int(os.read(descriptor, 128).split()[1]) * _PAGE_BYTES
    finally:
        os.close(descriptor)


class WorkerMemory:
    """Retire a worker that a large call left much larger than it was.

    After a burst of large unique bodies a worker stays larger than before (bench/BURST.md), and no trim gets it
    back: CPython's small-object allocator returns a 1 MiB arena only once every object in it is gone, and a few
    objects that outlive a large call pin the arenas it filled. Having every object come from glibc instead
    (`PYTHONMALLOC=malloc`) costs CPU on every call, large or not. So, as uWSGI's `reload-on-rss` does: after a
    large call, once its memory is trimmed, a worker whose resident memory exceeds its floor by more than
    `headroom_bytes` asks to be retired (`retire`, set by the server: the worker takes no new connection, finishes
    the calls it holds, writes its ledger and exits, and gunicorn forks a fresh one from the preloaded master).

    The floor is the least resident memory seen at the start of a large call (one whose Content-Length passes
    TRIM_AFTER_BYTES): the worker's size between large calls, measured where it costs nothing on ordinary calls.
    """

    def __init__(self, headroom_bytes: int, rss: Callable[[], int] = resident_bytes) -> None:
        self.headroom_bytes = headroom_bytes
        self.retire: Callable[[int, int], None] | None = None
        self._rss = rss
        self._floor = 0
        self._retiring = False
        self._lock = threading.Lock()

    def before_large_call(self) -> None:
        if self.headroom_bytes <= 0:
            return
        now = self._rss()
        with self._lock:
            if now and (not self._floor or now < self._floor):
                self._floor = now

    def after_large_call(self) -> None:
        """Give free pages back, then retire the worker if what remains is more than the headroom over its floor."""
        release_freed_memory()
        if self.headroom_bytes <= 0 or self.retire is None:
            return
        now = self._rss()
        with self._lock:
            if self._retiring or not self._floor or now - self._floor <= self.headroom_bytes:
                return
            self._retiring = True
            floor = self._floor
        self.retire(now, floor)
