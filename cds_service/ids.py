"""Random UUIDs (version 4) for cards, suggestions and request ids, cheaply.

`uuid.uuid4()` makes one `urandom` system call per id, which is slow on some virtual machines (tens of
microseconds); a response needs about ten ids. Random bytes are read from the OS in blocks instead — still the
kernel's CSPRNG — and the block is discarded in a forked child, so gunicorn workers never hand out the same ids.
"""

from __future__ import annotations

import os
import threading
import uuid


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
    """A random (version 4) UUID as a string."""
    return str(uuid.UUID(bytes=_random.take16(), version=4))
