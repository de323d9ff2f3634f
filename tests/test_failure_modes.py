"""Fault injection through the public surface, with real parts: `cds-service serve` (gunicorn, several workers) on
SQLite and on PostgreSQL, its workers killed with SIGKILL, the server stopped with SIGTERM and started again, a private
PostgreSQL server stopped and started under load, three migrations at once, clients that send their requests one byte
at a time. Each load test counts the cards answered with 200 against the ledger's rows afterwards: they must be equal.
Everything runs on loopback, loops are bounded, and every process a test starts is stopped by it."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
import requests
from fhir.resources.R4B.operationoutcome import OperationOutcome
from sqlalchemy import create_engine, func, select

from cds_service.fixtures import find_fixture
from cds_service.services import patient_view
from cds_service.storage.migrate import head_revision
from cds_service.storage.models import Feedback, IssuedCard
from tests.faults import PostgresCluster, free_port, running, service_command

PV = "/cds-services/fbss-miss-advisor"
FIXTURE = find_fixture("recurrent-herniation")
NOW = datetime.now(UTC)
BODY = FIXTURE.hook_request(patient_view.SERVICE.prefetch, NOW)


class Server:
    """`cds-service serve` in a subprocess; start, stop (SIGTERM), kill a worker, start again on the same state."""

    def __init__(self, tmp_path: Path, database_url: str | None = None, workers: int = 2, threads: int = 4) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
        self.env.update(CDS_INSTANCE_PATH=str(tmp_path / "instance"), CDS_THREADS=str(threads),
                        CDS_LOG_LEVEL="WARNING")
        if database_url:
            self.env["CDS_DATABASE_URL"] = database_url
        self.workers = workers
        self.log_path = tmp_path / "server.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> Server:
        log = self.log_path.open("a")
        self.process = subprocess.Popen([*service_command(), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                         "--workers", str(self.workers)], env=self.env, stdout=log,
                                        stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{self.base}/healthz", timeout=1).status_code == 200 and len(self.worker_pids()) \
                        == self.workers:
                    return self
            except requests.ConnectionError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"server did not start:\n{self.log_path.read_text()[-4000:]}")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        assert self.process is not None
        out = subprocess.run(["/usr/bin/ps", "-o", "pid=", "--ppid", str(self.process.pid)], check=False,
                             capture_output=True, text=True)
        return [int(pid) for pid in out.stdout.split()]

    def stop(self, timeout: float = 40) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Load:
    """Threads calling the service in a loop until stopped; counts what came back."""

    def __init__(self, base: str, threads: int = 4, feedback: bool = False) -> None:
        self.base, self.feedback = base, feedback
        self.cards: set[str] = set()
        self.started: dict[str, float] = {}  # each card: when the call that answered it was sent (monotonic)
        self.statuses: dict[int, int] = {}
        self.feedback_sent = 0
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            body = {**BODY, "hookInstance": str(uuid.uuid4())}
            sent = time.monotonic()
            try:
                response = session.post(self.base + PV, json=body, timeout=30)
            except requests.RequestException as exc:
                with self._lock:
                    self.errors.append(type(exc).__name__)
                time.sleep(0.05)
                continue
            with self._lock:
                self.statuses[response.status_code] = self.statuses.get(response.status_code, 0) + 1
            if response.status_code != 200:
                time.sleep(0.05)
                continue
            cards = [card["uuid"] for card in response.json()["cards"]]
            with self._lock:
                self.cards.update(cards)
                self.started.update(dict.fromkeys(cards, sent))
            if self.feedback and cards:
                item = {"card": cards[0], "outcome": "overridden", "outcomeTimestamp": "2026-12-04T09:00:00Z"}
                answer = session.post(self.base + PV + "/feedback", json={"feedback": [item]}, timeout=30)
                with self._lock:
                    self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                    self.feedback_sent += answer.status_code == 200

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def server_errors(self) -> int:
        return sum(count for status, count in self.statuses.items() if status >= 500)


def ledger_cards(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return set(connection.execute(select(IssuedCard.card_uuid)).scalars())
    finally:
        engine.dispose()


def feedback_rows(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as connection:
            return connection.execute(select(func.count()).select_from(Feedback)).scalar_one()
    finally:
        engine.dispose()


def eventually_equal(expected: set[str], url: str, timeout: float = 30) -> set[str]:
    deadline = time.monotonic() + timeout
    stored = ledger_cards(url)
    while stored != expected and time.monotonic() < deadline:
        time.sleep(0.2)
        stored = ledger_cards(url)
    return stored


def eventually_recorded(answered: set[str], url: str, in_flight: int, timeout: float = 30) -> set[str]:
    """After a SIGKILL: every answered card is stored; a few more may be (recorded, then the process died before the
    response reached the client), at most the cards of the calls in flight."""
    deadline = time.monotonic() + timeout
    stored = ledger_cards(url)
    while not answered <= stored and time.monotonic() < deadline:
        time.sleep(0.2)
        stored = ledger_cards(url)
    assert answered <= stored, f"{len(answered - stored)} answered cards not in the ledger"
    assert len(stored - answered) <= in_flight
    return stored


def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'instance' / 'cds-service.sqlite3'}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_several_workers_under_parallel_calls_and_feedback_answer_no_5xx_and_lose_no_row(backend, tmp_path,
                                                                                        request):
    url = request.getfixturevalue("postgres_url") if backend == "postgresql" else None
    with Server(tmp_path, url, workers=3) as server, Load(server.base, threads=6, feedback=True) as load:
        time.sleep(6)
    assert load.server_errors() == 0 and load.errors == []
    assert len(load.cards) > 100
    stored_url = url or sqlite_url(tmp_path)
    assert eventually_equal(load.cards, stored_url) == load.cards
    assert feedback_rows(stored_url) == load.feedback_sent


def test_a_worker_killed_with_sigkill_loses_no_answered_card(tmp_path):
    with Server(tmp_path, workers=2) as server:
        with Load(server.base, threads=4) as load:
            for _ in range(3):
                time.sleep(1.5)
                os.kill(server.worker_pids()[0], signal.SIGKILL)  # mid-load: rows in its spool, unwritten
            time.sleep(1.5)
        assert len(load.cards) > 50
        # The killed workers' segments are replayed by the survivors (or the next start).
        eventually_recorded(load.cards, sqlite_url(tmp_path), in_flight=3 * 4 * 2)


def test_sigkill_of_the_whole_server_then_a_restart_loses_no_answered_card(tmp_path):
    server = Server(tmp_path, workers=2).start()
    try:
        with Load(server.base, threads=4) as load:
            time.sleep(2)
            pids = server.worker_pids()
            os.kill(server.process.pid, signal.SIGKILL)
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
        server.process.wait(timeout=10)
        assert len(load.cards) > 20
        server.start()  # the same instance folder: the start-up replays what the dead processes left
        eventually_recorded(load.cards, sqlite_url(tmp_path), in_flight=4 * 2)
    finally:
        server.stop()


def test_sigterm_finishes_calls_and_flushes_the_backlog(tmp_path):
    server = Server(tmp_path, workers=2).start()
    try:
        with Load(server.base, threads=4) as load:
            time.sleep(2)
            server.stop()
        assert server.process.returncode == 0
        assert len(load.cards) > 20
        # Nothing was left for a next start: the clean shutdown wrote every row.
        assert ledger_cards(sqlite_url(tmp_path)) == load.cards
        assert not list((tmp_path / "instance" / "spool").glob("ledger-*.jsonl"))
    finally:
        server.stop()


def test_the_instance_folder_deleted_under_load_loses_no_card_answered_after_it(tmp_path):
    """`make run`, then the SQLite file and the spool deleted while calls go on: the database is recreated, and every
    card of a call sent after the deletion is in it (and counted by the report). A call in flight during the deletion
    may have had its rows written to the old file just before it went: deleting a database loses what is in it."""
    with Server(tmp_path, workers=2) as server, Load(server.base, threads=4) as load:
        time.sleep(1.5)
        with load._lock:
            before = set(load.cards)
            shutil.rmtree(tmp_path / "instance")
            deleted = time.monotonic()
        time.sleep(3)
    after = {card for card in load.cards - before if load.started[card] > deleted}
    assert len(after) > 20 and load.server_errors() == 0
    deadline = time.monotonic() + 30
    while not after <= ledger_cards(sqlite_url(tmp_path)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert after <= ledger_cards(sqlite_url(tmp_path))


def test_postgresql_stopped_and_started_under_load_loses_no_card_and_answers_no_500(tmp_path):
    with PostgresCluster() as postgres, Server(tmp_path, postgres.url, workers=2) as server:
        with Load(server.base, threads=4, feedback=True) as load:
            time.sleep(1.5)
            postgres.stop()
            time.sleep(4)  # calls go on: the spool keeps their cards; feedback gets 503 + Retry-After
            readiness = requests.get(server.base + "/readyz", timeout=10).json()
            postgres.start()
            time.sleep(2.5)
        assert readiness["status"] == "degraded"
        assert load.statuses.get(500, 0) == 0
        assert set(load.statuses) <= {200, 503}
        assert len(load.cards) > 50
        assert eventually_equal(load.cards, postgres.url) == load.cards
        assert feedback_rows(postgres.url) == load.feedback_sent


def test_three_migrations_at_once_on_an_empty_database_all_succeed(database_url, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env.update(CDS_DATABASE_URL=database_url, CDS_INSTANCE_PATH=str(tmp_path))
    processes = [subprocess.Popen([*service_command(), "db", "upgrade"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT) for _ in range(3)]
    outputs = []
    for process in processes:
        with running(process):
            out, _ = process.communicate(timeout=120)
            outputs.append((process.returncode, out.decode()))
    assert [code for code, _ in outputs] == [0, 0, 0], outputs
    assert all(f"schema at revision {head_revision()}" in out for _, out in outputs)


def _trickle(port: int, stop: threading.Event, headers_only: bool) -> None:
    """A client that sends its request one byte every 0.2 s (never finishing within the test)."""
    body = orjson.dumps(BODY)
    request = (f"POST {PV} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    if headers_only:
        request = request[:request.index(b"\r\n\r\n")]
    with socket.create_connection(("127.0.0.1", port)) as sock:
        for index in range(len(request)):
            if stop.is_set():
                return
            try:
                sock.sendall(request[index:index + 1])
            except OSError:
                return
            time.sleep(0.2)


def test_slow_clients_do_not_stop_healthz_or_other_calls(tmp_path):
    """Six clients trickling bodies or headers to a single worker: /healthz and a full call still answer in a
    second (a sync worker held by one of them answered nothing for 30 s)."""
    stop = threading.Event()
    with Server(tmp_path, workers=1, threads=8) as server:
        clients = [threading.Thread(target=_trickle, args=(server.port, stop, index % 2 == 0), daemon=True)
                   for index in range(6)]
        for client in clients:
            client.start()
        try:
            time.sleep(1.0)
            for _ in range(5):
                started = time.monotonic()
                assert requests.get(server.base + "/healthz", timeout=5).status_code == 200
                assert requests.post(server.base + PV, json={**BODY, "hookInstance": str(uuid.uuid4())},
                                     timeout=5).status_code == 200
                assert time.monotonic() - started < 1.0
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=5)


def test_a_call_with_full_prefetch_never_waits_behind_other_calls_backfill(tmp_path):
    """Three calls whose data must come from a FHIR server that trickles (each held until the 2 s deadline) on a
    single worker: a call with everything prefetched still answers at once."""
    from tests.faults import SlowHttpServer  # noqa: PLC0415

    bundle = orjson.dumps({"resourceType": "Bundle", "type": "searchset", "entry": []})
    with SlowHttpServer(bundle * 100, interval=0.1) as fhir, Server(tmp_path, workers=1, threads=8) as server:
        needs_fetch = {**BODY, "prefetch": {}, "fhirServer": fhir.url}
        stuck = [threading.Thread(target=requests.post, args=(server.base + PV,),
                                  kwargs={"json": {**needs_fetch, "hookInstance": str(uuid.uuid4())}, "timeout": 30},
                                  daemon=True) for _ in range(3)]
        for thread in stuck:
            thread.start()
        time.sleep(0.5)
        assert fhir.open_connections > 0  # the backfills are under way
        started = time.monotonic()
        response = requests.post(server.base + PV, json={**BODY, "hookInstance": str(uuid.uuid4())}, timeout=10)
        assert response.status_code == 200 and response.json()["cards"]
        assert time.monotonic() - started < 1.0
        for thread in stuck:
            thread.join(timeout=30)
        deadline = time.monotonic() + 5
        while fhir.open_connections and time.monotonic() < deadline:
            time.sleep(0.05)
        assert fhir.open_connections == 0  # cancelled on the wire at the deadline, not read to the end


def test_sigterm_while_postgresql_is_down_keeps_the_rows_for_the_next_start(tmp_path):
    with PostgresCluster() as postgres:
        server = Server(tmp_path, postgres.url, workers=2).start()
        try:
            postgres.stop()
            with Load(server.base, threads=3) as load:
                time.sleep(2)
            server.stop()  # the workers cannot reach the database: their rows stay in the spool
            assert server.process.returncode == 0
            assert len(load.cards) > 10
            assert list((tmp_path / "instance" / "spool").glob("ledger-*.jsonl"))
            postgres.start()
            server.start()  # the start-up replays the spool
            assert eventually_equal(load.cards, postgres.url) == load.cards
            assert not list((tmp_path / "instance" / "spool").glob("ledger-*.jsonl"))
        finally:
            server.stop()


def _raw(port: int, request: bytes) -> tuple[str, dict, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    return status, {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}, body


@pytest.mark.parametrize(("request_bytes", "status"), [
    (b"NOT A REQUEST LINE\r\n\r\n", "400"),
    (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", "431"),
])
def test_the_wsgi_servers_own_errors_are_operation_outcomes(tmp_path, request_bytes, status):
    with Server(tmp_path, workers=1) as server:
        line, headers, body = _raw(server.port, request_bytes)
    assert line.split()[1] == status
    assert headers["content-type"] == "application/json"
    outcome = orjson.loads(body)
    OperationOutcome.model_validate(outcome)
    assert outcome["issue"][0]["severity"] == "error"
    assert b"a" * 100 not in body  # nothing of the request echoed


def _padded(body: dict, megabytes: float) -> dict:
    """The same patient with enough unrelated Conditions (a code no value set holds) to pass `megabytes`."""
    conditions = body["prefetch"]["conditions"]
    filler = {"resourceType": "Condition", "subject": {"reference": f"Patient/{body['context']['patientId']}"},
              "code": {"text": "common cold " + "x" * 400,
                       "coding": [{"system": "http://snomed.info/sct", "code": "82272006", "display": "Common cold"}]},
              "onsetDateTime": "2015-02-01"}
    entries = list(conditions["entry"])
    while len(orjson.dumps(entries)) < megabytes * 1024 * 1024:
        entries.extend({"resource": {**filler, "id": f"filler-{len(entries)}-{i}"}} for i in range(500))
    return {**body, "prefetch": {**body["prefetch"], "conditions": {**conditions, "entry": entries}},
            "hookInstance": str(uuid.uuid4())}


def test_large_calls_on_one_kept_alive_connection_are_answered_whole(tmp_path):
    """A call past 1 MB has its memory handed back once its response is sent and closed (cpu_slot): the response
    still goes out whole, and the connection serves the next calls."""
    with Server(tmp_path, workers=1) as server, requests.Session() as session:
        expected = sorted(c["source"]["topic"]["code"]
                          for c in requests.post(server.base + PV, json=BODY, timeout=30).json()["cards"])
        assert expected
        for _ in range(3):
            large = orjson.dumps(_padded(BODY, 1.5))
            assert len(large) > 1024 * 1024
            response = session.post(server.base + PV, data=large, timeout=60,
                                    headers={"Content-Type": "application/json"})
            assert response.status_code == 200
            assert sorted(c["source"]["topic"]["code"] for c in response.json()["cards"]) == expected
            follow = session.post(server.base + PV, json={**BODY, "hookInstance": str(uuid.uuid4())}, timeout=30)
            assert follow.status_code == 200 and follow.json()["cards"]


def _unique_padded(megabytes: float) -> bytes:
    """A large call no cache has seen: unrelated Conditions with unique ids and texts."""
    body = _padded(BODY, megabytes)
    tag = uuid.uuid4().hex
    for index, entry in enumerate(body["prefetch"]["conditions"]["entry"]):
        if entry["resource"]["id"].startswith("filler-"):
            entry["resource"] = {**entry["resource"], "id": f"{tag}-{index}",
                                 "code": {"text": f"{tag} {index} common cold " + "x" * 300}}
    return orjson.dumps(body)


def test_a_worker_left_larger_than_its_headroom_is_replaced_losing_no_call(tmp_path):
    """CDS_WORKER_MEMORY_HEADROOM_MB: a worker that large calls left bigger than its headroom finishes what it holds
    and is replaced; calls running meanwhile (on kept-alive connections too) are answered, every card answered is in
    the ledger."""
    server = Server(tmp_path, workers=1)
    server.env["CDS_WORKER_MEMORY_HEADROOM_MB"] = "1"
    server.env["CDS_LOG_LEVEL"] = "INFO"
    answered: set[str] = set()
    with server, Load(server.base, threads=3) as load, requests.Session() as session:
        [first] = server.worker_pids()
        deadline = time.monotonic() + 60
        while server.worker_pids() in ([first], []) and time.monotonic() < deadline:
            response = session.post(server.base + PV, data=_unique_padded(1.5), timeout=60,
                                     headers={"Content-Type": "application/json"})
            assert response.status_code == 200
            answered.update(card["uuid"] for card in response.json()["cards"])
        time.sleep(1)  # load goes on against the fresh worker
        replacement = server.worker_pids()
    assert replacement and first not in replacement
    assert load.server_errors() == 0 and load.errors == []
    assert set(load.statuses) == {200}
    answered |= load.cards
    assert eventually_equal(answered, sqlite_url(tmp_path)) == answered
    records = [orjson.loads(line) for line in server.log_path.read_text().splitlines() if line.startswith("{")]
    retired = [r for r in records if r["message"].startswith("worker left larger than its memory headroom")]
    assert retired  # the fresh worker may be replaced in turn by the large calls sent before the loop saw it
    assert all(r["level"] == "WARNING" and r["headroom_mb"] == 1 and r["resident_mb"] - r["floor_mb"] > 0.9
               for r in retired)  # over 1 MB, each figure rounded to 0.1 MB
