"""Scale-out: three instances of the real server (`cds-service serve`, production profile) on one PostgreSQL
database, behind nginx configured as deploy/nginx.conf. A client JWT used on one instance is refused on another,
feedback sent to two instances is stored once, every instance reports the same analytics, and an instance stopped
gracefully under load loses no call. Needs nginx (Debian's nginx-light; CI installs it) and a PostgreSQL server."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from cds_service.fixtures import find_fixture
from cds_service.services import patient_view
from tests.faults import free_port
from tests.issuer import Issuer, bearer, trusted_issuers_file
from tests.test_failure_modes import Server, feedback_rows, ledger_cards

PUBLIC = "https://cds.example.org"
PV = f"/cds-services/{patient_view.SERVICE.id}"
DEPLOY = Path(__file__).resolve().parent.parent / "deploy"

requires_nginx = pytest.mark.skipif(
    shutil.which("nginx") is None and not os.environ.get("CDS_TEST_NGINX"),
    reason="nginx is not installed (Debian's nginx-light; .ci/run installs it and sets CDS_TEST_NGINX)")


class Nginx:
    """nginx in the foreground on a free port, with deploy/nginx.conf's server block pointed at `ports`."""

    def __init__(self, folder: Path, ports: list[int]) -> None:
        self.port = free_port()
        folder.mkdir()
        folder.chmod(0o777)
        site = (DEPLOY / "nginx.conf").read_text()
        site = re.sub(r"(?m)^\s*server cds:8080 .*$", "\n".join(
            f"    server 127.0.0.1:{port} max_fails=1 fail_timeout=5s;" for port in ports), site)
        site = site.replace("listen 8080;", f"listen 127.0.0.1:{self.port};")
        (folder / "site.conf").write_text(site)
        temp = " ".join(f"{kind}_temp_path {folder / kind};" for kind in ("client_body", "proxy", "fastcgi",
                                                                              "uwsgi", "scgi"))
        (folder / "nginx.conf").write_text(
            f"daemon off; pid {folder / 'nginx.pid'}; error_log {folder / 'error.log'}; worker_processes 1;\n"
            + ("user root;\n" if os.geteuid() == 0 else "")
            + "events { worker_connections 512; }\n"
            f"http {{ access_log off; {temp} include {folder / 'site.conf'}; }}\n")
        self.process = subprocess.Popen([shutil.which("nginx") or "nginx", "-p", str(folder), "-c",
                                         str(folder / "nginx.conf")], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while True:
            try:
                requests.get(f"http://127.0.0.1:{self.port}/healthz", timeout=1)
                break
            except requests.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start: {self.process.stderr.read().decode()}") from None
                time.sleep(0.1)
        self.base = f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.process.send_signal(signal.SIGQUIT)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@requires_nginx
def test_three_instances_behind_nginx_share_one_database_and_lose_nothing(tmp_path, postgres_url):
    issuer = Issuer()
    issuers = trusted_issuers_file(tmp_path / "issuers.json", issuer.config())
    secret = uuid.uuid4().hex + uuid.uuid4().hex
    servers = []
    for index in range(3):
        server = Server(tmp_path / f"node{index}", postgres_url, workers=1, threads=4)
        (tmp_path / f"node{index}").mkdir()
        server.env.update(CDS_PROFILE="production", CDS_PUBLIC_BASE_URL=PUBLIC, CDS_TRUSTED_ISSUERS=issuers,
                          CDS_PATIENT_HASH_SECRET=secret)
        servers.append(server.start())
    nginx = Nginx(tmp_path / "nginx", [server.port for server in servers])
    fixture = find_fixture("01")
    body = fixture.hook_request(patient_view.SERVICE.prefetch, datetime.now(UTC))
    try:
        # A token accepted by one instance is refused by another: the replay store is the shared database.
        token = issuer.token(PUBLIC + PV)
        first = requests.post(servers[0].base + PV, json=body, headers=bearer(token), timeout=10)
        assert first.status_code == 200
        replayed = requests.post(servers[1].base + PV, json=body, headers=bearer(token), timeout=10)
        assert replayed.status_code == 401
        refusals = [json.loads(line) for line in servers[1].log_path.read_text().splitlines() if line.startswith("{")]
        assert any(r["message"] == "client authentication failed" and "replay" in r["reason"].lower()
                   for r in refusals), refusals

        # Feedback on one card, sent to two instances, is stored once.
        card = first.json()["cards"][0]["uuid"]
        item = {"card": card, "outcome": "overridden", "outcomeTimestamp": "2026-12-04T09:00:00Z"}
        for server in (servers[0], servers[2]):
            answer = requests.post(server.base + PV + "/feedback", json={"feedback": [item]}, timeout=10,
                                   headers=bearer(issuer.token(PUBLIC + PV + "/feedback")))
            assert answer.status_code == 200, answer.text
        assert feedback_rows(postgres_url) == 1

        # Calls through nginx while one instance is stopped gracefully: every call answered, every card recorded.
        answered, statuses, errors = {card}, [], []
        lock, stop = threading.Lock(), threading.Event()

        def client() -> None:
            session = requests.Session()
            while not stop.is_set():
                try:
                    response = session.post(nginx.base + PV, json={**body, "hookInstance": str(uuid.uuid4())},
                                            headers=bearer(issuer.token(PUBLIC + PV)), timeout=30)
                except requests.RequestException as exc:
                    with lock:
                        errors.append(type(exc).__name__)
                    continue
                with lock:
                    statuses.append(response.status_code)
                    if response.status_code == 200:
                        answered.update(c["uuid"] for c in response.json()["cards"])

        threads = [threading.Thread(target=client) for _ in range(4)]
        for thread in threads:
            thread.start()
        time.sleep(3)
        servers[2].stop()
        time.sleep(3)
        stop.set()
        for thread in threads:
            thread.join(30)
        assert errors == [] and set(statuses) == {200} and len(statuses) > 30
        deadline = time.monotonic() + 30
        while not answered <= ledger_cards(postgres_url) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert answered <= ledger_cards(postgres_url)

        # The report is the same from every instance still up (one database).
        reports = [requests.get(server.base + "/analytics/feedback", timeout=10,
                                headers=bearer(issuer.token(PUBLIC + "/analytics/feedback"))).json()
                   for server in servers[:2]]
        assert reports[0] == reports[1] and reports[0]["cardTypes"]
    finally:
        nginx.stop()
        for server in servers:
            server.stop()
