"""Request ids (version-4 UUIDs) and card and suggestion ids (time-ordered version-7 UUIDs): unique, well formed,
and never shared by forked workers."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest

from cds_service import ids
from cds_service.ids import new_uuid, time_ordered_uuid


def test_ids_are_unique_version_4_uuids():
    made = [new_uuid() for _ in range(5000)]
    assert len(set(made)) == 5000
    assert all(uuid.UUID(i).version == 4 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i
               for i in made)


def test_time_ordered_ids_are_unique_version_7_uuids_that_start_with_the_time(monkeypatch):
    made = [time_ordered_uuid() for _ in range(5000)]
    assert len(set(made)) == 5000
    assert all(uuid.UUID(i).version == 7 and uuid.UUID(i).variant == uuid.RFC_4122 and str(uuid.UUID(i)) == i
               for i in made)
    monkeypatch.setattr(ids.time, "time_ns", lambda: 1_764_000_000_123_456_789)  # 2025-11-24T16:00:00.123Z
    pinned = time_ordered_uuid()
    assert uuid.UUID(pinned).int >> 80 == 1_764_000_000_123  # RFC 9562: the first 48 bits are Unix milliseconds


def test_time_ordered_ids_sort_by_the_millisecond_they_were_made_in(monkeypatch):
    clock = iter(range(1_764_000_000_000_000_000, 1_764_000_001_000_000_000, 1_000_000))  # one id per millisecond
    monkeypatch.setattr(ids.time, "time_ns", lambda: next(clock))
    made = [time_ordered_uuid() for _ in range(500)]
    assert sorted(made) == made  # as strings too: what a text primary key is ordered by


@pytest.mark.parametrize("make", [new_uuid, time_ordered_uuid], ids=["version-4", "version-7"])
def test_a_forked_child_does_not_repeat_the_parents_ids(make: Callable[[], str]):
    make()  # the parent now holds a block of random bytes
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.close(read)
        os.write(write, "".join(make() for _ in range(10)).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 10_000).decode()
    os.waitpid(pid, 0)
    parent = "".join(make() for _ in range(10))
    child_ids = {child[i:i + 36] for i in range(0, 360, 36)}
    parent_ids = {parent[i:i + 36] for i in range(0, 360, 36)}
    assert len(child_ids) == 10 and not child_ids & parent_ids
    # The random part too (ids of the same millisecond differ only there).
    assert not {i[15:] for i in child_ids} & {i[15:] for i in parent_ids}
