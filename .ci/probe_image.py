"""Probe a running image of the service as an EHR would: health, readiness, discovery and one patient-view call,
each with a freshly signed client JWT (production profile). Usage: probe_image.py BASE_URL ISSUERS_JSON KEY_PEM, first
with `--write-issuers` (before the container starts) to write the trusted-issuers file the container mounts."""

from __future__ import annotations

import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cds_service.fixtures import find_fixture  # noqa: E402
from cds_service.services import patient_view  # noqa: E402
from tests.issuer import Issuer, bearer  # noqa: E402

PUBLIC_BASE_URL = "https://cds.example.org"


def main() -> None:
    base, issuers, key = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if "--write-issuers" in sys.argv:
        issuer = Issuer("https://ehr.example.org")
        issuers.write_text(json.dumps({"issuers": [issuer.config()]}))
        key.write_bytes(issuer.private_key.private_bytes(*_pem()))
        key.with_suffix(".kid").write_text(issuer.kid)
        return
    issuer = Issuer("https://ehr.example.org")
    from cryptography.hazmat.primitives.serialization import load_pem_private_key  # noqa: PLC0415

    issuer.private_key = load_pem_private_key(key.read_bytes(), password=None)
    issuer.kid = key.with_suffix(".kid").read_text()
    deadline = time.monotonic() + 60
    while True:
        try:
            if requests.get(f"{base}/healthz", timeout=2).status_code == 200:
                break
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline:
            sys.exit("the container did not answer /healthz within 60 s")
        time.sleep(0.5)
    ready = requests.get(f"{base}/readyz", timeout=5)
    check(ready.status_code == 200, ready.text)
    discovery = requests.get(f"{base}/cds-services", timeout=5,
                             headers=bearer(issuer.token(f"{PUBLIC_BASE_URL}/cds-services")))
    check(discovery.status_code == 200 and len(discovery.json()["services"]) == 3, discovery.text)
    fixture = find_fixture("01")
    body = fixture.hook_request(patient_view.SERVICE.prefetch, datetime.now(UTC))
    url = f"/cds-services/{patient_view.SERVICE.id}"
    call = requests.post(base + url, json=body, timeout=10, headers=bearer(issuer.token(PUBLIC_BASE_URL + url)))
    check(call.status_code == 200, call.text)
    types = [card["source"]["topic"]["code"] for card in call.json()["cards"]]
    check("fbss-imaging" in types, str(types))
    unsigned = requests.post(base + url, json=body, timeout=10)
    check(unsigned.status_code == 401, unsigned.text)
    print(f"image probed: /healthz, /readyz, discovery and patient-view (cards {types}) with a signed JWT; "
          "unsigned call refused (401)")


def check(condition: bool, detail: str) -> None:
    if not condition:
        sys.exit(f"image probe failed: {detail[:500]}")


def _pem():
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()


if __name__ == "__main__":
    main()
