"""The CPU slot: one call at a time runs in a worker, in arrival order, and a call waiting on the network lets go."""

from __future__ import annotations

import io
import threading
import time

import pytest

from cds_service.cpu_slot import BufferedCalls, CpuSlot


def test_the_slot_is_handed_over_in_arrival_order():
    slot = CpuSlot()
    order: list[int] = []
    gate = threading.Event()

    def first():
        with slot.held():
            gate.wait(5)

    def call(index):
        with slot.held():
            order.append(index)

    holder = threading.Thread(target=first)
    holder.start()
    time.sleep(0.05)
    waiters = []
    for index in range(8):
        thread = threading.Thread(target=call, args=(index,))
        thread.start()
        waiters.append(thread)
        time.sleep(0.02)  # they arrive in this order
    gate.set()
    for thread in [holder, *waiters]:
        thread.join(5)
    assert order == list(range(8))


def test_a_call_waiting_on_the_network_lets_another_run():
    slot = CpuSlot()
    ran = threading.Event()

    def other():
        with slot.held():
            ran.set()

    with slot.held():
        thread = threading.Thread(target=other)
        thread.start()
        assert not ran.wait(0.1)  # held: the other call waits
        with slot.released():
            assert ran.wait(2)  # let go while waiting: the other call ran
        thread.join(2)


def test_a_thread_holding_the_slot_may_enter_it_again():
    """The local sandbox page calls the service in-process, inside its own call."""
    slot = CpuSlot()
    with slot.held(), slot.held():
        pass
    with slot.held():  # and it was let go once, at the outer end
        pass


def test_released_outside_the_slot_does_nothing():
    slot = CpuSlot()
    with slot.released():
        pass
    with slot.held():
        pass


def test_the_body_is_read_before_the_slot_is_taken_and_never_past_the_limit():
    slot = CpuSlot()
    seen = {}

    def app(environ, start_response):
        seen["body"] = environ["wsgi.input"].read()
        return [b""]

    class Input(io.BytesIO):
        def read(self, size=-1):
            assert not getattr(slot._holder, "holds", False)  # the network read happens outside the slot
            return super().read(size)

    calls = BufferedCalls(app, slot, max_body_bytes=10)
    calls({"CONTENT_LENGTH": "5", "wsgi.input": Input(b"hello")}, None)
    assert seen["body"] == b"hello"
    calls({"wsgi.input_terminated": True, "wsgi.input": Input(b"x" * 50)}, None)
    assert seen["body"] == b"x" * 11  # one byte past the limit: the app answers 413
    calls({"CONTENT_LENGTH": "50", "wsgi.input": io.BytesIO(b"y" * 50)}, None)
    assert seen["body"] == b"y" * 50  # declared too large: left to the app (413 without reading)


def test_memory_is_handed_back_after_a_large_body_only(monkeypatch):
    from cds_service import memory  # noqa: PLC0415
    from cds_service.memory import limit_malloc_arenas, release_freed_memory  # noqa: PLC0415

    release_freed_memory()  # callable on this C library (a no-op where it has no malloc_trim)
    limit_malloc_arenas()
    trims = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: trims.append(1))
    calls = BufferedCalls(lambda environ, start_response: [b""], CpuSlot(), max_body_bytes=4 * 1024 * 1024)
    calls({"CONTENT_LENGTH": "100", "wsgi.input": io.BytesIO(b"x" * 100)}, None)
    assert trims == []
    size = 2 * 1024 * 1024
    environ = {"CONTENT_LENGTH": str(size), "wsgi.input": io.BytesIO(b"x" * size)}
    response = calls(environ, None)
    body = environ["wsgi.input"]
    assert list(response) == [b""]
    assert trims == [] and not body.closed  # the response still being sent: its objects are alive
    response.close()  # the server is done with it (PEP 3333)
    assert trims == [1]
    assert body.closed  # the buffer is let go now, not when the collector finds the request's reference cycle


def test_a_large_call_s_response_is_closed_before_memory_is_handed_back(monkeypatch):
    from cds_service import memory  # noqa: PLC0415

    events = []
    monkeypatch.setattr(memory, "release_freed_memory", lambda: events.append("trim"))

    class Response(list):
        def close(self):
            events.append("closed")

    calls = BufferedCalls(lambda environ, start_response: Response([b"{}"]), CpuSlot(), max_body_bytes=4 << 20)
    size = 2 * 1024 * 1024
    calls({"CONTENT_LENGTH": str(size), "wsgi.input": io.BytesIO(b"x" * size)}, None).close()
    assert events == ["closed", "trim"]


class FakeResidentMemory:
    """What `/proc/self/statm` would say, set by the test."""

    def __init__(self, mb: int) -> None:
        self.mb = mb

    def __call__(self) -> int:
        return self.mb << 20


def _large_call(calls: BufferedCalls, rss: FakeResidentMemory, grows_by_mb: int) -> None:
    size = 2 * 1024 * 1024
    response = calls({"CONTENT_LENGTH": str(size), "wsgi.input": io.BytesIO(b"x" * size)}, None)
    rss.mb += grows_by_mb
    response.close()


def test_a_worker_left_larger_than_its_headroom_by_large_calls_is_retired(monkeypatch):
    from cds_service import memory  # noqa: PLC0415
    from cds_service.memory import WorkerMemory  # noqa: PLC0415

    monkeypatch.setattr(memory, "release_freed_memory", lambda: None)
    rss = FakeResidentMemory(90)
    worker = WorkerMemory(headroom_bytes=8 << 20, rss=rss)
    retired = []
    worker.retire = lambda now, floor: retired.append((now >> 20, floor >> 20))
    calls = BufferedCalls(lambda environ, start_response: [b"{}"], CpuSlot(), max_body_bytes=4 << 20, memory=worker)
    for _ in range(4):
        _large_call(calls, rss, grows_by_mb=2)
    assert retired == []  # 98 MB: 8 MB over the floor is still within the headroom
    rss.mb = 60  # the floor is the least seen at the start of a large call
    _large_call(calls, rss, grows_by_mb=0)
    rss.mb = 68
    _large_call(calls, rss, grows_by_mb=1)
    assert retired == [(69, 60)]
    _large_call(calls, rss, grows_by_mb=20)
    assert retired == [(69, 60)]  # asked once: the worker is on its way out


def test_ordinary_calls_never_read_memory_and_a_zero_headroom_never_retires(monkeypatch):
    from cds_service import memory  # noqa: PLC0415
    from cds_service.memory import WorkerMemory  # noqa: PLC0415

    monkeypatch.setattr(memory, "release_freed_memory", lambda: None)
    reads = []
    worker = WorkerMemory(headroom_bytes=1, rss=lambda: reads.append(1) or (len(reads) * 100) << 20)
    worker.retire = lambda now, floor: pytest.fail("retired")
    calls = BufferedCalls(lambda environ, start_response: [b"{}"], CpuSlot(), max_body_bytes=4 << 20, memory=worker)
    for _ in range(10):
        calls({"CONTENT_LENGTH": "100", "wsgi.input": io.BytesIO(b"x" * 100)}, None)
    assert reads == []  # a call under TRIM_AFTER_BYTES costs no /proc read
    disabled = WorkerMemory(headroom_bytes=0, rss=lambda: pytest.fail("read"))
    disabled.retire = lambda now, floor: pytest.fail("retired")
    calls = BufferedCalls(lambda environ, start_response: [b"{}"], CpuSlot(), max_body_bytes=4 << 20, memory=disabled)
    calls({"CONTENT_LENGTH": str(2 << 20), "wsgi.input": io.BytesIO(b"x" * (2 << 20))}, None).close()


def test_resident_memory_is_read_from_proc():
    from cds_service.memory import resident_bytes  # noqa: PLC0415

    assert 10 << 20 < resident_bytes() < 4 << 30
