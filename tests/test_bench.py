"""The benchmark's synthetic patients: valid R4 (fhir.resources R4B), EHR-sized, and clinically what they claim.

The benchmark's ratios are only meaningful if its requests look like an EHR's: valid resources of realistic size
(performance-notes.md measured about 1.9 KB per resource), a few matching the rules among many that do not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import orjson
import pytest
from fhir.resources.R4B import get_fhir_model_class

from bench.generate import ANCHOR, patient
from bench.instructions import collected
from cds_service.fhir.prefetch import PATIENT_RECORD
from cds_service.fhir.record import resources_in
from cds_service.fhir.search import prefetch_for
from tests.support import hook_request

FBSS = "Persistent/recurrent lumbar symptoms 42 wk after spine surgery (possible FBSS) — imaging recommended"
RISKS = "Surgical risk factors for MISS/revision: uncontrolled diabetes — optimize before surgical referral"
# With a bigger chart come the ibuprofen prescriptions of the background noise: conservative care already tried.
REFERRAL = ("Recurrent symptoms despite conservative care after spine surgery — refer to spine surgeon for "
            "revision/MISS evaluation")
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
    app.extensions["cds.clock"] = lambda: ANCHOR
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
