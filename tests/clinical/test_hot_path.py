"""The engine evaluates a large record from plain dicts, without fhir.resources on its path."""

from __future__ import annotations

import random

import pytest
from pydantic import BaseModel

from cds_service.clinical import evaluate, load_thresholds
from cds_service.fhir.record import build_record
from tests.clinical.builders import E, condition, lumbar_fbss, medication_request, observation, patient, procedure


def synthetic_patient(size: int, seed: int = 7) -> list[dict]:
    """`size` resources: a few that matter and a realistic mass that does not."""
    rng = random.Random(seed)
    resources = [patient(), *lumbar_fbss(300), condition("M51.26", onset_days_ago=90)]
    makers = [
        lambda i: condition(rng.choice(["J45.909", "I10", "E78.5", "M54.50", "K21.9"]),
                            onset_days_ago=rng.randint(1, 3000)),
        lambda i: observation(rng.choice(["8867-4", "8480-6", "72514-3", "4548-4", "39156-5"]),
                              rng.uniform(1, 40), "1", days_ago=rng.randint(1, 900)),
        lambda i: medication_request(rng.choice(["197361", "1049621", "197807", "310431"]),
                                     start_days_ago=rng.randint(1, 700), supply_days=rng.choice([None, 30, 90])),
        lambda i: procedure(rng.choice(["80146002", "97110", "73761001"]), system=rng.choice(["sct", "cpt"]),
                            days_ago=rng.randint(1, 3000)),
    ]
    while len(resources) < size:
        resource = rng.choice(makers)(len(resources))
        resource["id"] = f"r{len(resources)}"
        resources.append(resource)
    return resources


def test_two_thousand_resources_without_fhir_resources(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("fhir.resources validation on the request path")

    monkeypatch.setattr(BaseModel, "model_validate", classmethod(forbidden))
    monkeypatch.setattr(BaseModel, "__init__", forbidden)
    resources = synthetic_patient(2000)
    evaluation = evaluate(build_record(resources, E), E, load_thresholds())
    assert "fbss-imaging" in evaluation.card_types
    assert len(resources) == 2000 and build_record(resources, E).size > 100


@pytest.mark.parametrize("size", [10, 100, 500])
def test_findings_do_not_depend_on_record_size_noise(size):
    base = evaluate(build_record(synthetic_patient(10), E), E, load_thresholds())
    assert "fbss-imaging" in base.card_types
    assert "fbss-imaging" in evaluate(build_record(synthetic_patient(size), E), E, load_thresholds()).card_types
