"""`cds-service simulate`: one fixture as a clinician sees it, raw JSON, and --all against the expectations."""

from __future__ import annotations

import orjson
from click.testing import CliRunner

from cds_service.cli import main
from cds_service.fixtures import load_fixtures


def test_simulate_all_passes_for_every_fixture():
    result = CliRunner().invoke(main, ["simulate", "--all", "--at", "2026-11-22"])
    assert result.exit_code == 0, result.output
    assert "0 failed" in result.output and "FAIL " not in result.output


def test_simulate_all_reports_a_failing_expectation(tmp_path):
    patients = tmp_path / "patients"
    patients.mkdir()
    fixture = load_fixtures()[0]
    (patients / f"{fixture.name}.json").write_bytes(orjson.dumps(fixture.bundle))
    wrong = dict(fixture.expected, cards=[{"type": "red-flag", "indicator": "critical", "mustSuggest": [],
                                            "mustNotSuggest": []}])
    (patients / f"{fixture.name}.expected.json").write_bytes(orjson.dumps(wrong))
    result = CliRunner().invoke(main, ["simulate", "--all", "--fixtures", str(tmp_path)])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "0 passed, 1 failed" in result.output


def test_simulate_prints_cards_as_a_clinician_sees_them():
    result = CliRunner().invoke(main, ["simulate", "01", "--at", "2025-06-01"])
    assert result.exit_code == 0, result.output
    assert "[WARNING] Persistent/recurrent lumbar symptoms 39 weeks after spine surgery" in result.output
    assert "[+] Order MRI lumbar spine without and with contrast (recommended) — 72158" in result.output


def test_simulate_json_is_the_raw_response():
    result = CliRunner().invoke(main, ["simulate", "fbss-cervical-acdf", "--json", "--at", "2026-01-15"])
    assert result.exit_code == 0, result.output
    body = orjson.loads(result.output)
    assert [c["source"]["topic"]["code"] for c in body["cards"]] == ["fbss-imaging"]


def test_simulate_unknown_fixture_is_an_error():
    result = CliRunner().invoke(main, ["simulate", "no-such-patient"])
    assert result.exit_code != 0 and "no single fixture" in result.output


def test_simulate_needs_a_fixture_or_all():
    assert CliRunner().invoke(main, ["simulate"]).exit_code == 2
