"""UUIDs for request ids (random, version 4) and for cards and suggestions (time-ordered, version 7), cheaply.

`uuid.uuid4()` makes one `urandom` system call per id, which is slow on some virtual machines (tens of
microseconds); a response needs about ten ids. Random bytes are read from the OS in blocks instead — still the
kernel's CSPRNG — and the block is discarded in a forked child, so gunicorn workers never hand out the same ids.

Card and suggestion uuids are the primary keys of the issued-card ledger. Random keys land on a random page of each
key index, so every batch the ledger commits rewrites pages all over the file, and its cost grows with the table
(bench/DECISIONS.md). Version 7 (RFC 9562 §5.7) puts the Unix time in milliseconds first and
74 random bits after it, so new keys go to the end of the index. The standard library has `uuid.uuid7()` only from
Python 3.14; the few lines here keep the fork-safe random source above.
"""

from __future__ import annotations

import os
import threading
import time


class _RandomBlocks:
    BLOCK = 16 * 256

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.buffer, self.offset = b"", 0

    def take16(self) -> bytes:
        with self.lock:
            if self.offset + 16 > len(self.buffer):
                self.buffer, self.offset = os.urandom(self.BLOCK), 0
            raw = self.buffer[self.offset:self.offset + 16]
            self.offset += 16
            return raw


_random = _RandomBlocks()
os.register_at_fork(after_in_child=_random.reset)


def _formatted(raw: bytearray) -> str:
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def new_uuid() -> str:
    """A random (version 4, RFC 4122 variant) UUID as a string, formatted here rather than through `uuid.UUID`,
    whose checks cost more than the random bytes."""
    raw = bytearray(_random.take16())
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    return _formatted(raw)


def time_ordered_uuid() -> str:
    """A version 7 UUID (RFC 9562): 48 bits of Unix time in milliseconds, then random bits. Ids made in the same
    millisecond are in random order among themselves; what matters to the ledger's indexes is that each batch's keys
    sit together at the end."""
    raw = bytearray((time.time_ns() // 1_000_000).to_bytes(6, "big") + _random.take16()[:10])
    raw[6] = (raw[6] & 0x0F) | 0x70  # version 7
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 9562 variant (as RFC 4122's)
    return _formatted(raw)
