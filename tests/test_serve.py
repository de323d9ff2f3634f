"""The real `cds-service serve` (gunicorn) on a free port, called over HTTP."""

from __future__ import annotations

import gc
import os
import re
import signal
import subprocess
import time

import orjson
import pytest
import requests

from cds_service.server import GC_YOUNG_THRESHOLD, freeze_start_up
from tests.faults import free_port, service_command


@pytest.fixture
def server(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    env["CDS_INSTANCE_PATH"] = str(tmp_path / "instance")
    log = (tmp_path / "server.log").open("w+")
    process = subprocess.Popen(
        [*service_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                pytest.fail(f"server did not start:\n{log.read()}")
            time.sleep(0.1)
        yield base, log
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def test_discovery_over_http(server):
    base, _ = server
    response = requests.get(f"{base}/cds-services", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert len(response.json()["services"]) == 3


def test_metrics_add_up_every_worker(server):
    base, _ = server
    for _ in range(12):
        requests.get(f"{base}/cds-services", timeout=5)
    text = requests.get(f"{base}/metrics", timeout=5).text
    match = re.search(r'cds_request_duration_seconds_count\{route="/cds-services",service="",status="200"\} (\S+)',
                      text)
    assert match and float(match.group(1)) == 12.0  # two workers, one sum


def test_server_runs_gunicorn_and_logs_json(server):
    """One log format: the service's lines, gunicorn's own (boots, signals) and the start-up line are all JSON."""
    base, log = server
    requests.post(f"{base}/cds-services/fbss-miss-advisor", json={"hook": "patient-view"}, timeout=5)
    time.sleep(0.3)
    log.seek(0)
    lines = [line for line in log.read().splitlines() if line.strip()]
    records = [orjson.loads(line) for line in lines]  # every line: not one plain-text line left
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
    assert any(r["logger"] == "cds_service.server" and r["message"].startswith("cds-service (") for r in records)
    assert any(r["message"] == "request" and r["status"] == 400 and r["level"] == "INFO" and r["request_id"]
               for r in records)
    assert all({"level", "logger", "message", "time"} <= set(r) for r in records)


def test_the_worker_starts_frozen_with_young_collections_rarer():
    """What `GunicornServer.load` leaves the forked workers: start-up frozen out of the collector's view, and the
    young generation collected at GC_YOUNG_THRESHOLD net new objects instead of CPython's 700."""
    threshold = gc.get_threshold()
    try:
        gc.unfreeze()
        gc.set_threshold(700, *threshold[1:])  # CPython's default, whatever an earlier test in this process left
        freeze_start_up()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *threshold[1:])
    finally:
        gc.unfreeze()  # the rest of the suite runs with the collector as it was
        gc.set_threshold(*threshold)
