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
