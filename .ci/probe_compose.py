"""Probe the compose deployment (.ci/compose.sh) through nginx, as a user of `docker compose up` would see it.

Usage: probe_compose.py BASE_URL PROJECT. Checks: ready within 120 s; the migration ran once and exited 0; three
service instances running; discovery lists the services; a patient-view call for a fixture patient answers its cards;
those cards reach PostgreSQL (the ledger's writer is asynchronous: waited for up to 20 s).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time

import requests

from cds_service.fixtures import find_fixture
from cds_service.services import patient_view

DOCKER = shutil.which("docker") or "/usr/bin/docker"


def compose(project: str, *args: str) -> str:
    return subprocess.run([DOCKER, "compose", "-p", project, *args], cwd="deploy", check=True,  # noqa: S603
                          capture_output=True, text=True).stdout


def check(condition: object, what: object) -> None:
    """Fail the probe, saying what was found (asserts vanish under `python -O`)."""
    if not condition:
        raise SystemExit(f"probe failed: {what}")


def main(base: str, project: str) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if requests.get(f"{base}/readyz", timeout=3).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("not ready within 120 s")
        time.sleep(1)

    containers = [json.loads(line) for line in compose(project, "ps", "-a", "--format", "json").splitlines() if line]
    by_service: dict[str, list[dict]] = {}
    for container in containers:
        by_service.setdefault(container["Service"], []).append(container)
    migrate = by_service["migrate"]
    check(len(migrate) == 1 and migrate[0]["State"] == "exited" and migrate[0]["ExitCode"] == 0, migrate)
    running = [c for c in by_service["cds"] if c["State"] == "running"]
    check(len(running) == 3, by_service["cds"])
    print(f"probe: migration exited 0; {len(running)} instances running; nginx {by_service['nginx'][0]['State']}")

    services = requests.get(f"{base}/cds-services", timeout=5).json()["services"]
    print("probe: discovery:", sorted({(s["id"], s["hook"]) for s in services}))
    fixture = find_fixture("01-fbss-lumbar-classic")
    body = fixture.hook_request(patient_view.SERVICE.prefetch, fixture.anchor)
    answered = []
    for _ in range(6):  # spread over the instances by nginx
        response = requests.post(f"{base}/cds-services/fbss-miss-advisor", json=body, timeout=10)
        check(response.status_code == 200, (response.status_code, response.text[:300]))
        answered += [card["source"]["topic"]["code"] for card in response.json()["cards"]]
    check(answered, "no cards")
    print(f"probe: 6 patient-view calls answered {len(answered)} cards ({sorted(set(answered))})")

    deadline = time.monotonic() + 20
    while True:
        stored = int(compose(project, "exec", "-T", "postgres", "psql", "-U", "cds", "-d", "cds", "-tAc",
                             "SELECT count(*) FROM issued_card").strip())
        if stored >= len(answered) or time.monotonic() > deadline:
            break
        time.sleep(1)
    check(stored >= len(answered), (stored, len(answered)))
    print(f"probe: {stored} cards in PostgreSQL")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
