"""`python bench/order_reuse.py`: what reusing an order evaluation saves a sign call, in one run.

An order-sign call whose inputs equal a call evaluated moments before (CDS_ORDER_REUSE_SECONDS) is answered from the
kept findings. Measured in-process, as bench/run.py measures (request bytes to response bytes, SQLite ledger on,
clock pinned, collector set as in a gunicorn worker), best of several rounds, at 100 and 2,000 resources:

- with prefetch: the same order-sign call with reuse off (every call evaluated) and with reuse on (every call after
  the first answered from the kept findings; the digest of the inputs is paid on every call);
- without prefetch, the patient's record read from a FHIR server on loopback (the fixtures server in a thread): the
  cost the reuse saves is then the FHIR reads as well.

Writes bench/ORDER_REUSE.md.
"""

from __future__ import annotations

import argparse
import io
import logging
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from cds_service.state import state

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.generate import ANCHOR, patient  # noqa: E402
from bench.run import settle  # noqa: E402

SIZES = (100, 2000)
DRAFTS = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {
    "resourceType": "ServiceRequest", "id": "sr-mri", "status": "draft", "intent": "order",
    "subject": {"reference": "Patient/bench-1"},
    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "72148"}]}}}]}


def _app(reuse_seconds: float) -> Any:
    from cds_service import create_app  # noqa: PLC0415

    # FHIR_MAX_PAGES: the 2,000-resource record takes more search pages than the default allows (an evaluation with
    # data left unread is never kept, and would not be reused).
    app = create_app({"INSTANCE_PATH": tempfile.mkdtemp(prefix="cds-bench-reuse-"),
                      "ORDER_REUSE_SECONDS": reuse_seconds, "FHIR_MAX_PAGES": 100})
    state(app).clock = lambda: ANCHOR
    return app


def _body(size: int, fhir_server: str | None) -> bytes:
    from cds_service.fhir.prefetch import PATIENT_RECORD  # noqa: PLC0415
    from cds_service.sandbox.search import prefetch_for  # noqa: PLC0415

    context = {"userId": "Practitioner/bench", "patientId": "bench-1", "draftOrders": DRAFTS}
    body: dict[str, Any] = {"hook": "order-sign", "hookInstance": "3f1e2d6a-9d0b-4a8e-9a51-7b3c1d2e4f50",
                            "context": context}
    if fhir_server is None:
        body["prefetch"] = prefetch_for(PATIENT_RECORD, context, patient(size))
    else:
        body["fhirServer"] = fhir_server
    return orjson.dumps(body)


def _call(app: Any, body: bytes) -> Any:
    from werkzeug.test import EnvironBuilder  # noqa: PLC0415

    environ = EnvironBuilder(path="/cds-services/fbss-miss-orders", method="POST", data=body,
                             content_type="application/json").get_environ()

    def call() -> float:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        started = time.perf_counter()
        b"".join(app.wsgi_app(env, lambda status, headers: None))
        return (time.perf_counter() - started) * 1000

    return call


def _fhir_server(size: int) -> str:
    """The fixtures FHIR server over a generated patient, on a loopback port, in a thread."""
    from werkzeug.serving import make_server  # noqa: PLC0415

    from cds_service.sandbox.fhir_server import create_fixtures_server  # noqa: PLC0415

    folder = Path(tempfile.mkdtemp(prefix="cds-bench-fhir-"))
    (folder / "patients").mkdir()
    # Every type the service reads must be served (the fixtures server answers 404 for a type it holds none of, which
    # the service counts as unavailable): another patient's imaging study makes ImagingStudy one.
    other = {"resourceType": "ImagingStudy", "id": "other-1", "status": "available",
             "subject": {"reference": "Patient/other"}}
    (folder / "patients" / "bench.json").write_bytes(orjson.dumps({"resourceType": "Bundle", "type": "collection",
                                                                   "entry": [{"resource": resource} for resource in
                                                                             [*patient(size), other]]}))
    expected = {"anchor": ANCHOR.isoformat(), "patientId": "bench-1", "hook": "patient-view", "cards": []}
    (folder / "patients" / "bench.expected.json").write_bytes(orjson.dumps(expected))
    server = make_server("127.0.0.1", 0, create_fixtures_server(folder, at=ANCHOR), threaded=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}"


def measure(repetitions: int, rounds: int) -> list[dict]:
    logging.disable(logging.WARNING)
    fresh_app, reuse_app = _app(0), _app(120)
    cases = []
    for size in SIZES:
        for source in ("prefetch", "FHIR server"):
            body = _body(size, None if source == "prefetch" else _fhir_server(size))
            calls = {"fresh": _call(fresh_app, body), "reused": _call(reuse_app, body)}
            for call in calls.values():
                for _ in range(5):
                    call()
            cases.append((size, source, calls))
    settle(fresh_app)
    settle(reuse_app)
    best: dict[tuple[int, str], dict[str, float]] = {}
    for _ in range(rounds):
        for size, source, calls in cases:
            n = repetitions if size < 2000 else max(10, repetitions // 10)
            for kind, call in calls.items():
                p50 = statistics.median(call() for _ in range(n))
                key = (size, source)
                best.setdefault(key, {})[kind] = min(best.get(key, {}).get(kind, float("inf")), p50)
    return [{"size": size, "source": source, **figures} for (size, source), figures in best.items()]


def write(rows: list[dict], path: Path) -> str:
    lines = ["# Order evaluations reused at sign time", "",
             f"Run {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `python bench/order_reuse.py` (plain build). "
             "order-sign with one draft order, in-process, p50 ms (best of rounds); `fresh`: reuse off, every call "
             "evaluated; `reused`: the same call answered from the findings kept by the previous one.", "",
             "| resources | patient data | fresh p50 ms | reused p50 ms | reused / fresh |", "|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['size']} | {row['source']} | {row['fresh']:.2f} | {row['reused']:.2f} | "
                     f"{row['reused'] / row['fresh']:.2f}x |")
    text = "\n".join(lines) + "\n"
    path.write_text(text)
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repetitions", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(write(measure(args.repetitions, args.rounds), ROOT / "bench" / "ORDER_REUSE.md"))


if __name__ == "__main__":
    main()
