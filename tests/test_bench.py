"""The benchmark's synthetic patients: valid R4 (fhir.resources R4B), EHR-sized, and clinically what they claim.

The benchmark's ratios are only meaningful if its requests look like an EHR's: valid resources of realistic size
(performance-notes.md measured about 1.9 KB per resource), a few matching the rules among many that do not.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from bench.generate import ANCHOR, patient
from bench.instructions import collected
from bench.run import _worker_pids, _workers_cpu_seconds, parse_wrk, report
from cds_service.compiled import recorded_sources
from cds_service.fhir.prefetch import PATIENT_RECORD
from cds_service.fhir.record import resources_in
from cds_service.sandbox.search import prefetch_for
from cds_service.state import state
from tests.support import hook_request

FBSS = "Persistent/recurrent lumbar symptoms 42 weeks after spine surgery (possible FBSS) — imaging recommended"
RISKS = "Surgical risk factors: uncontrolled diabetes — address alongside the surgical referral"
# With a bigger chart come the ibuprofen prescriptions of the background noise: conservative care already tried.
REFERRAL = "Recurrent symptoms despite conservative care after spine surgery — refer to a spine surgeon for evaluation"
CARDS = {10: {FBSS, RISKS}, 300: {FBSS, RISKS, REFERRAL}}
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def chart() -> list[dict]:
    return patient(300)


def test_every_generated_resource_validates_as_r4(chart):
    for resource in chart:
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_the_generator_is_deterministic_and_sized_exactly():
    assert patient(120) == patient(120)
    assert len(patient(120)) == 120
    assert patient(120, seed=2) != patient(120)


def test_resources_are_ehr_sized(chart):
    per_resource = len(orjson.dumps(chart)) / len(chart)
    assert 1300 <= per_resource <= 2500, per_resource


def test_the_prefetch_carries_every_generated_resource(chart):
    prefetch = prefetch_for(PATIENT_RECORD, {"patientId": "bench-1"}, chart)
    assert sum(1 for value in prefetch.values() for _ in resources_in(value)) == len(chart)


def test_a_realistic_mix_of_types(chart):
    kinds = Counter(r["resourceType"] for r in chart)
    assert set(kinds) == {"Patient", "Condition", "Procedure", "Observation", "MedicationRequest",
                          "MedicationStatement", "ServiceRequest", "DiagnosticReport"}
    assert kinds["Observation"] > kinds["Condition"] > kinds["ServiceRequest"]


def test_the_bench_patient_gets_its_cards(app, client):
    """The FBSS picture inside the noise still fires at every size: the benchmark measures a request with cards."""
    state(app).clock = lambda: ANCHOR
    for size in (10, 300):
        prefetch = prefetch_for(PATIENT_RECORD, {"patientId": "bench-1"}, patient(size))
        response = client.post("/cds-services/fbss-miss-advisor",
                               json=hook_request(patient_id="bench-1", prefetch=prefetch))
        assert response.status_code == 200
        assert {card["summary"] for card in response.json["cards"]} == CARDS[size]


def test_the_instruction_count_is_read_from_callgrind_and_a_missing_total_is_an_error():
    assert collected("==4242== Events    : Ir\n==4242== Collected : 11632123\n==4242==\n") == 11632123
    with pytest.raises(RuntimeError, match="no instruction total"):
        collected("valgrind: failed to start tool 'callgrind'\n")


def test_the_counted_child_makes_its_calls_and_exits_cleanly(tmp_path):
    # What bench/instructions.py runs under callgrind, run here without it: one service request and one parse.
    for what in ("service", "orjson"):
        result = subprocess.run([sys.executable, str(ROOT / "bench" / "instructions.py"), "--child", "patient-view",
                                 "10", what, "1"], check=False, capture_output=True, text=True, timeout=120,
                                env={**os.environ, "TMPDIR": str(tmp_path)})  # its instance folder goes there
        assert result.returncode == 0, result.stderr


WRK_OUTPUT = """Running 20s test @ http://127.0.0.1:8080/cds-services/fbss-miss-advisor
  2 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    13.10ms    5.21ms  61.22ms   71.03%
    Req/Sec   306.90     40.12   410.00     70.50%
  Latency Distribution
     50%   12.37ms
     75%   15.60ms
     90%   19.71ms
     99%   28.65ms
  12217 requests in 20.02s, 80.18MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:    610.31
Transfer/sec:      4.01MB
"""


def test_wrk_output_is_read_with_requests_latencies_and_errors():
    assert parse_wrk(WRK_OUTPUT) == {"rps": 610.31, "requests": 12217, "p50": 12.37, "p99": 28.65, "errors": 7}
    assert parse_wrk(WRK_OUTPUT.replace("12.37ms", "870.00us"))["p50"] == pytest.approx(0.87)


def test_worker_cpu_time_is_read_for_the_masters_children():
    # This test process plays the gunicorn master: its child burns about 0.3 s of CPU, then idles.
    child = subprocess.Popen([sys.executable, "-c", "import time\nend = time.process_time() + 0.3\n"
                              "while time.process_time() < end: pass\ntime.sleep(30)"])
    try:
        deadline = time.monotonic() + 20
        while _workers_cpu_seconds(os.getpid()) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in _worker_pids(os.getpid())
        assert 0.25 <= _workers_cpu_seconds(os.getpid()) < 5  # seconds, not clock ticks
    finally:
        child.kill()
        child.wait()


def test_the_results_say_which_build_they_measured():
    """The plain and the release (compiled) build differ in speed: the header says which one ran."""
    header = report([], [], [100.0], 20).splitlines()[2]
    count = len(recorded_sources())
    if count:
        assert count >= 10
        assert f"; release build: {count} of the {count} modules setup.py compiles with mypyc are compiled; commit " \
            in header
    else:
        assert "; plain build (interpreted;" in header
