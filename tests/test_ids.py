"""Card, suggestion and request ids: version-4 UUIDs, unique, and never shared by forked workers."""

from __future__ import annotations

import os
import uuid

from cds_service.ids import new_uuid


def test_ids_are_unique_version_4_uuids():
    ids = [new_uuid() for _ in range(5000)]
    assert len(set(ids)) == 5000
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i
               for i in ids)


def test_a_forked_child_does_not_repeat_the_parents_ids():
    new_uuid()  # the parent now holds a block of random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        os.write(write, "".join(new_uuid() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 10_000).decode()
    os.waitpid(pid, 0)
    parent = "".join(new_uuid() for _ in range(10))
    assert child and child != parent and not set(child[i:i + 36] for i in range(0, 360, 36)) & set(
        parent[i:i + 36] for i in range(0, 360, 36))
