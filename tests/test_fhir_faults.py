"""FHIR servers that misbehave on a real loopback socket (`responses` cannot be slow): the per-call deadline holds on
the wire, bodies are capped (a gzip bomb included), one slow server cannot take the threads other servers need, and a
connect timeout is retried once."""

from __future__ import annotations

import threading
import time

import orjson
import requests
import responses

from cds_service.fhir.client import FAILURE_CATEGORIES, Failure, FetchPolicy, FhirClient
from tests.faults import SlowHttpServer

BUNDLE = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []})


def policy(deadline: float = 1.0, max_response_bytes: int = 1024 * 1024) -> FetchPolicy:
    return FetchPolicy(production=False, deadline=deadline, connect_timeout=0.5, read_timeout=0.8, max_pages=10,
                       max_response_bytes=max_response_bytes)


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not condition():
        time.sleep(0.02)
    return condition()


def test_a_server_trickling_its_body_is_cut_off_at_the_deadline(tmp_path):
    # One byte every 0.2 s: each recv returns well within the read timeout, so only the deadline can stop it.
    with SlowHttpServer(BUNDLE * 20, interval=0.2) as server:
        started = time.monotonic()
        results = FhirClient().fetch_all(server.url, None, {"conditions": "Condition?patient=p1"}, policy(1.0))
        took = time.monotonic() - started
        assert results["conditions"].error == "timed out"
        assert took < 1.5
        # The socket was shut down: the server's next byte finds no reader, and its connection ends.
        assert wait_for(lambda: server.open_connections == 0)


def test_a_server_trickling_its_headers_is_cut_off_at_the_deadline():
    with SlowHttpServer(BUNDLE, interval=0.2, headers_slowly=True) as server:
        started = time.monotonic()
        results = FhirClient().fetch_all(server.url, None, {"conditions": "Condition?patient=p1"}, policy(1.0))
        assert results["conditions"].error == "timed out"
        assert time.monotonic() - started < 1.5
        assert wait_for(lambda: server.open_connections == 0)


def test_a_gzip_bomb_is_refused_at_the_cap_of_decompressed_bytes():
    with SlowHttpServer(b"", gzip_bomb_bytes=256 * 1024 * 1024) as server:  # 256 MiB of zeros, 256 KiB gzipped
        results = FhirClient().fetch_all(server.url, None, {"conditions": "Condition?patient=p1"},
                                         policy(5.0, max_response_bytes=1024 * 1024))
        assert results["conditions"].error == "the FHIR server's answer is larger than 1048576 bytes"


def test_a_body_declared_larger_than_the_cap_is_not_read():
    with SlowHttpServer(BUNDLE + b" " * 4096) as server:
        results = FhirClient().fetch_all(server.url, None, {"conditions": "Condition?patient=p1"},
                                         policy(2.0, max_response_bytes=1024))
        assert "larger than 1024 bytes" in results["conditions"].error


def test_a_gzipped_answer_within_the_cap_is_read():
    import gzip  # noqa: PLC0415

    body = orjson.dumps({"resourceType": "Bundle", "type": "searchset",
                         "entry": [{"resource": {"resourceType": "Condition", "id": str(i)}} for i in range(50)]})
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, "http://127.0.0.1:9/Condition", body=gzip.compress(body),
                 headers={"Content-Encoding": "gzip"}, content_type="application/fhir+json")
        results = FhirClient().fetch_all("http://127.0.0.1:9", None, {"c": "Condition"}, policy(2.0))
    assert len(results["c"].resource["entry"]) == 50


def test_a_slow_server_cannot_take_the_threads_calls_to_another_server_need():
    """Six hook calls stuck on one slow server, four keys each: the other server still answers at once."""
    client = FhirClient(max_per_origin=2)
    with SlowHttpServer(BUNDLE * 50, interval=0.1) as slow, SlowHttpServer(BUNDLE) as fast:
        stuck = [threading.Thread(target=client.fetch_all, args=(
            slow.url, None, {f"k{i}": f"Condition?k={i}" for i in range(4)}, policy(3.0))) for _ in range(6)]
        for thread in stuck:
            thread.start()
        time.sleep(0.3)
        started = time.monotonic()
        results = client.fetch_all(fast.url, None, {"conditions": "Condition?patient=p1"}, policy(3.0))
        assert results["conditions"].error is None
        assert time.monotonic() - started < 0.5
        assert slow.requests <= 2 + 2  # never more than two at a time to the slow server (and one retry's worth)
        for thread in stuck:
            thread.join(timeout=10)


def test_a_connect_timeout_is_retried_once():
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, "http://127.0.0.1:9/Patient/p1", body=requests.ConnectTimeout("connect timed out"))
        mock.add(responses.GET, "http://127.0.0.1:9/Patient/p1", json={"resourceType": "Patient", "id": "p1"})
        results = FhirClient().fetch_all("http://127.0.0.1:9", None, {"patient": "Patient/p1"}, policy(2.0))
        assert results["patient"].resource == {"resourceType": "Patient", "id": "p1"}
        assert len(mock.calls) == 2


def test_a_second_connect_timeout_makes_the_data_unavailable():
    with responses.RequestsMock() as mock:
        mock.add(responses.GET, "http://127.0.0.1:9/Patient/p1", body=requests.ConnectTimeout("connect timed out"))
        mock.add(responses.GET, "http://127.0.0.1:9/Patient/p1", body=requests.ConnectTimeout("connect timed out"))
        results = FhirClient().fetch_all("http://127.0.0.1:9", None, {"patient": "Patient/p1"}, policy(2.0))
        assert results["patient"].error == "timed out"
        assert len(mock.calls) == 2


def production_policy(*networks: str) -> FetchPolicy:
    import ipaddress  # noqa: PLC0415

    return FetchPolicy(production=True, deadline=2.0, connect_timeout=0.5, read_timeout=0.8, max_pages=10,
                       allowed_networks=tuple(ipaddress.ip_network(n) for n in networks))


def test_production_never_connects_to_a_private_address_unless_its_network_is_allowed():
    from cds_service.fhir.client import FORBIDDEN_ADDRESS  # noqa: PLC0415

    with SlowHttpServer(BUNDLE) as server:
        refused = FhirClient().fetch_all(server.url, "t", {"c": "Condition"}, production_policy())
        assert refused["c"].error == FORBIDDEN_ADDRESS
        assert server.requests == 0  # refused before any packet was sent
        allowed = FhirClient().fetch_all(server.url, "t", {"c": "Condition"}, production_policy("127.0.0.0/8"))
        assert allowed["c"].error is None and server.requests == 1
        assert FhirClient().fetch_all(server.url, None, {"c": "Condition"}, policy())["c"].error is None  # local


def test_the_refusal_says_nothing_about_what_listens_there():
    from tests.faults import free_port  # noqa: PLC0415

    with SlowHttpServer(BUNDLE) as server:
        open_port = FhirClient().fetch_all(server.url, "t", {"c": "Condition"}, production_policy())
    closed_port = FhirClient().fetch_all(f"http://127.0.0.1:{free_port()}", "t", {"c": "Condition"},
                                         production_policy())
    link_local = FhirClient().fetch_all("http://169.254.169.254", "t", {"c": "Condition"}, production_policy())
    assert open_port["c"].error == closed_port["c"].error == link_local["c"].error


class _Scripted(SlowHttpServer):
    """Answers with exactly the bytes given, then closes (or stalls, then closes)."""

    def __init__(self, raw: bytes, stall: float = 0.0) -> None:
        self.raw, self.stall = raw, stall
        super().__init__(b"")

    def _answer(self, client) -> None:
        try:
            client.recv(65536)
            client.sendall(self.raw)
            time.sleep(self.stall)
        except OSError:
            pass
        finally:
            client.close()


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/fhir+json\r\n"


def test_every_transport_failure_is_a_typed_fetch_failure():
    """A body cut short, a stall past the read timeout in the middle of a body, a redirect, a wrong content type,
    a chunked body that breaks off: each is a typed failure with a fixed metric category (412 or a gap upstream),
    never an exception."""
    cases = {
        "truncated": _Scripted(HEAD + b"Content-Length: 1000\r\n\r\n" + BUNDLE[:10]),
        "stalled mid-body": _Scripted(HEAD + b"Content-Length: 1000\r\n\r\n" + BUNDLE[:10], stall=1.5),
        "redirect": _Scripted(b"HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n"),
        "html": _Scripted(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 13\r\n\r\n<html></html>"),
        "broken chunks": _Scripted(HEAD + b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"res\r\nzz\r\n"),
    }
    for name, server in cases.items():
        with server:
            result = FhirClient().fetch_all(server.url, None, {"c": "Condition"}, policy(2.0))["c"]
        assert result.resource is None and isinstance(result.error, Failure), name
        assert result.error.category in FAILURE_CATEGORIES, (name, result.error.category)
