"""Random UUIDs (version 4) for cards, suggestions and request ids, cheaply.

`uuid.uuid4()` makes one `urandom` system call per id, which is slow on some virtual machines (tens of
microseconds); a response needs about ten ids. Random bytes are read from the OS in blocks instead — still the
kernel's CSPRNG — and the block is discarded in a forked child, so gunicorn workers never hand out the same ids.
"""

from __future__ import annotations

import os
import threading


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


def new_uuid() -> str:
    """A random (version 4, RFC 4122 variant) UUID as a string, formatted here rather than through `uuid.UUID`,
    whose checks cost more than the random bytes."""
    raw = bytearray(_random.take16())
    raw[6] = (raw[6] & 0x0F) | 0x40  # version 4
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"
