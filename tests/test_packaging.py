"""What a non-editable install (the Docker image) gets: the data files, the console script, the image's settings.

No Docker engine runs on the build machines, so the image itself is not built here; these tests check the parts of
it that can be checked without one.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_wheel_carries_the_package_data(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(tmp_path),
         str(ROOT)],
        check=True, capture_output=True,
    )
    [wheel] = tmp_path.glob("cds_service-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    data_files = {str(p.relative_to(ROOT)) for p in (ROOT / "cds_service").rglob("*.json")}
    assert data_files and data_files <= names
    templates = {f"cds_service/card_templates/{p.name}" for p in (ROOT / "cards").iterdir()
                 if p.suffix in (".yaml", ".json")}
    assert templates and templates <= names
    pages_and_migrations = {str(p.relative_to(ROOT)) for pattern in ("*.html", "*.mako", "migrations/**/*.py")
                            for p in (ROOT / "cds_service").rglob(pattern)}
    assert {"cds_service/http/templates/analytics.html", "cds_service/sandbox/templates/sandbox.html",
            "cds_service/storage/migrations/versions/0002_ledger_and_feedback.py"} <= pages_and_migrations <= names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "cds-service = cds_service.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_dockerfile_runs_production_profile_as_non_root_with_healthcheck():
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, flags=re.MULTILINE)
    assert len(stages) == 2 and all(s == "${BASE}" for s in stages)
    assert re.search(r"^ARG BASE=debian:bookworm-slim$", text, flags=re.MULTILINE)  # Debian's own Python 3.11
    final = text.split("\nFROM ")[-1]
    assert "CDS_PROFILE=production" in final
    assert re.search(r"^USER (?!root)\w+", final, flags=re.MULTILINE)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert 'CMD ["cds-service", "serve"]' in final
    assert "--constraint constraints.txt" in text
    assert "COPY cards ./cards" in text  # the card templates ship inside the package
    assert "gcc" not in final and "build-essential" not in final


def test_dockerignore_keeps_local_state_out_of_the_image():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "instance", "tests"} <= set(ignored)
