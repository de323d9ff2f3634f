"""Build step beside pyproject.toml: plain Python by default; with `CDS_SERVICE_MYPYC=1`, the release build, the
request path's pure-Python modules are compiled to C extensions with mypyc (as mypy's own `MYPY_USE_MYPYC=1`).

Why a release option: a hook call's own work (reading the record, deriving facts, evaluating rules) is plain Python
over dicts, and compiling it takes about a quarter off a call (bench/RESULTS.md states both builds), but every
install then needs a C compiler and a minute, an edited module needs a rebuild, and profilers cannot see inside
compiled functions. Both builds answer the same: the sources stay the reference, the compiler refuses a module that
does not type-check, a compiled module checks its declared argument types at run time, and a test runs every fixture
through every hook on both and requires the same answers (tests/test_compiled.py, run by `make test-compiled`).

Everything else (Flask, the HTTP layer, storage, logging, the Jinja templates the cards are rendered from) stays
interpreted: it is either library code or gains little. `SOURCES_RECORD` keeps the SHA-256 of each compiled source,
so that the service can refuse to start on an extension built from a source that has changed since
(cds_service/compiled.py): with an editable install the extension sits beside its source and Python loads the
extension first.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from setuptools import setup

COMPILED = (
    "cds_service/fhir/dates.py",
    "cds_service/fhir/record.py",
    "cds_service/fhir/resolve.py",
    "cds_service/terminology/valuesets.py",
    "cds_service/hooks/request.py",
    "cds_service/clinical/model.py",
    "cds_service/clinical/medications.py",
    "cds_service/clinical/facts.py",
    "cds_service/clinical/rules.py",
    "cds_service/clinical/orders.py",
    "cds_service/clinical/engine.py",
    "cds_service/render/citation.py",
    "cds_service/render/suggestions.py",
    "cds_service/render/cards.py",
    "cds_service/ids.py",
    "cds_service/services/patient_data.py",
    "cds_service/services/patient_view.py",
    "cds_service/services/order_select.py",
)
SOURCES_RECORD = Path("cds_service/compiled-sources.json")


def record_sources(paths: tuple[str, ...]) -> None:
    """Write the module name and SHA-256 of each source compiled (read by cds_service.compiled at start-up)."""
    digests = {path.removesuffix(".py").replace("/", "."): hashlib.sha256(Path(path).read_bytes()).hexdigest()
               for path in paths}
    SOURCES_RECORD.write_text(json.dumps(digests, indent=2, sort_keys=True) + "\n")


def remove_compiled() -> None:
    """A plain build in a tree that held a compiled one (an editable install): its extensions would be imported
    before the sources beside them, so they go, with their record."""
    SOURCES_RECORD.unlink(missing_ok=True)
    for path in COMPILED:
        for extension in Path(path).parent.glob(Path(path).stem + ".*.so"):
            extension.unlink()
    for extension in Path().glob("cds_service__mypyc.*.so"):
        extension.unlink()


# The build must not depend on what else is installed: third-party packages are not read (they type as Any), and
# the service's other modules are read for their types but not checked (they are not compiled).
MYPY_OPTIONS = ("--no-site-packages", "--ignore-missing-imports", "--follow-imports=silent")
if os.environ.get("CDS_SERVICE_MYPYC") == "1":
    from mypyc.build import mypycify

    record_sources(COMPILED)
    setup(ext_modules=mypycify([*MYPY_OPTIONS, *COMPILED], opt_level="3", group_name="cds_service"))
else:
    remove_compiled()
    setup()
