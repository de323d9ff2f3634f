"""The release build's compiled modules (setup.py with CDS_SERVICE_MYPYC=1, mypyc): built from the sources beside them,
answering as the sources do interpreted, and refused when a source has changed since the build (cds_service.compiled).
The tests that need a compiled build run under `make test-compiled` (CI runs it after the plain suite)."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from cds_service import compiled
from cds_service.app import create_app
from cds_service.cli import main
from cds_service.compiled import StaleBuild, check_compiled_sources, compiled_modules, recorded_sources, stale_modules

ROOT = Path(__file__).resolve().parent.parent


def _setup_compiled() -> set[str]:
    """The module names setup.py compiles (its COMPILED tuple, read without running setup.py)."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    [paths] = [node.value for node in ast.walk(tree) if isinstance(node, ast.Assign)
               and any(isinstance(t, ast.Name) and t.id == "COMPILED" for t in node.targets)]
    return {ast.literal_eval(p).removesuffix(".py").replace("/", ".") for p in paths.elts}


requires_compiled = pytest.mark.skipif(
    not recorded_sources(), reason="plain build; `make test-compiled` runs this on the release (compiled) build")


@requires_compiled
def test_every_module_setup_compiles_is_compiled_here_from_its_current_source():
    expected = _setup_compiled()
    assert {"cds_service.fhir.record", "cds_service.clinical.facts", "cds_service.clinical.rules"} <= expected
    record = recorded_sources()
    assert set(record) == expected
    assert set(compiled_modules(record)) == expected  # imported from extensions, not from the .py files
    assert stale_modules(record) == []


def _fake_extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str) -> dict[str, str]:
    """A module `pkg.mod` seen as compiled (its extension beside `mod.py`), recorded with `source`'s digest."""
    (tmp_path / "mod.py").write_text(source)
    extension = tmp_path / "mod.cpython-311-x86_64-linux-gnu.so"
    monkeypatch.setattr(compiled, "compiled_modules", lambda record: {"pkg.mod": extension})
    return {"pkg.mod": hashlib.sha256(source.encode()).hexdigest()}


def test_a_module_is_stale_when_its_source_changed_or_went_after_the_build(tmp_path, monkeypatch):
    record = _fake_extension(tmp_path, monkeypatch, "RULE = 1\n")
    assert stale_modules(record) == []
    (tmp_path / "mod.py").write_text("RULE = 2\n")
    assert stale_modules(record) == ["pkg.mod"]
    (tmp_path / "mod.py").unlink()
    assert stale_modules(record) == ["pkg.mod"]


def test_without_a_record_nothing_is_checked(tmp_path):
    assert recorded_sources(tmp_path / "missing.json") == {}
    check_compiled_sources(tmp_path / "missing.json")


def _stale_record(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A record saying cds_service.fhir.record was compiled from another source, its extension beside record.py
    (real in the release build, pretended in the plain one)."""
    record = recorded_sources() or {"cds_service.fhir.record": ""}
    record["cds_service.fhir.record"] = "0" * 64
    path = tmp_path / "compiled-sources.json"
    path.write_text(json.dumps(record))
    monkeypatch.setattr(compiled, "SOURCES_RECORD", path)
    if not compiled_modules(record):
        source = ROOT / "cds_service" / "fhir" / "record.py"
        extension = source.with_name("record.cpython-311-x86_64-linux-gnu.so")
        monkeypatch.setattr(compiled, "compiled_modules", lambda record: {"cds_service.fhir.record": extension})


def test_the_app_refuses_to_start_on_a_stale_build(tmp_path, monkeypatch):
    _stale_record(tmp_path, monkeypatch)
    with pytest.raises(StaleBuild, match=r"cds_service\.fhir\.record.*make install"):
        create_app({"INSTANCE_PATH": str(tmp_path / "instance")})


def test_serve_refuses_to_start_on_a_stale_build_with_a_message(tmp_path, monkeypatch):
    _stale_record(tmp_path, monkeypatch)
    # serve sets up the metrics folder before the check; set here, the variable is removed again after the test
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    result = CliRunner().invoke(main, ["serve", "--port", "1"])
    assert result.exit_code == 1
    assert "compiled from an older version of their source: cds_service.fhir.record" in result.output
    assert "Traceback" not in result.output


# Every fixture through every hook, cards without their uuids (the app link's too), and whether the record builder
# ran compiled.
_EVERY_FIXTURES_CARDS = """
import sys
import orjson
import cds_service.fhir.record
from cds_service.fixtures import load_fixtures, noon
from cds_service.simulate import _app, call

app = _app(sys.argv[1])
at = noon("2026-11-22")
answers = []
for fixture in load_fixtures(sys.argv[2]):
    for hook in ("patient-view", "order-select", "order-sign"):
        try:
            status, body = call(app, fixture, hook, at)
        except LookupError:  # no draft orders for this hook
            continue
        for card in body.get("cards", []):
            card.pop("uuid")
            for suggestion in card.get("suggestions", []):
                suggestion.pop("uuid")
            for link in card.get("links", []):  # the evidence app's appContext names the card by its uuid
                if link["type"] == "smart":
                    link["appContext"] = {k: v for k, v in orjson.loads(link["appContext"]).items() if k != "card"}
        answers.append([fixture.name, hook, status, body])
sys.stdout.write(orjson.dumps({"compiled": cds_service.fhir.record.__file__.endswith(".so"),
                               "answers": answers}).decode())
"""


def _every_fixtures_cards(tmp_path: Path, name: str, pythonpath: Path | None) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CDS_")}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    result = subprocess.run(
        [sys.executable, "-c", _EVERY_FIXTURES_CARDS, str(tmp_path / name), str(ROOT / "fhir_fixtures")],
        cwd=pythonpath or ROOT, env=env, capture_output=True, text=True, timeout=300, check=True)
    return json.loads(result.stdout)


@requires_compiled
def test_the_compiled_build_answers_every_fixture_as_its_sources_do_interpreted(tmp_path):
    """The sources stay the reference: run from a copy of the package without the extensions, they must give the
    same answers, card for card, as the compiled build (mypyc checks types at run time and has its own semantics in
    corners; this is where a difference would show)."""
    sources = tmp_path / "sources"
    shutil.copytree(ROOT / "cds_service", sources / "cds_service",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__", "compiled-sources.json"))
    shutil.copytree(ROOT / "cards", sources / "cds_service" / "card_templates",
                    ignore=shutil.ignore_patterns("__pycache__"))
    compiled = _every_fixtures_cards(tmp_path, "compiled", None)
    interpreted = _every_fixtures_cards(tmp_path, "interpreted", sources)
    assert compiled["compiled"] and not interpreted["compiled"]
    assert len(compiled["answers"]) >= 70 and sum(len(a[3].get("cards", [])) for a in compiled["answers"]) > 40
    assert interpreted["answers"] == compiled["answers"]
