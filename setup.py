"""Build step beside pyproject.toml: the request path's pure-Python modules are compiled to C extensions with mypyc.

Why: a hook call's own work (reading the record, deriving facts, evaluating rules) is plain Python over dicts, and the
interpreter's cost dominated it (bench/: patient-view at 100 resources missed its target by about a fifth). mypyc,
the mypy project's compiler, turns these modules, as written and type-checked, into C extensions. The sources stay
the reference; the compiler refuses a module that does not type-check, and a compiled module checks its declared
argument types at run time.

Everything else (Flask, the HTTP layer, storage, logging, the Jinja templates the cards are rendered from) stays
interpreted: it is either library code or gains little. `SOURCES_RECORD` keeps the SHA-256 of each compiled source,
so that the service can refuse to start on an extension built from a source that has changed since
(cds_service/compiled.py): with an editable install the extension sits beside its source and Python loads the
extension first.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from mypyc.build import mypycify
from setuptools import setup

COMPILED = (
    "cds_service/fhir/dates.py",
    "cds_service/fhir/record.py",
    "cds_service/fhir/resolve.py",
    "cds_service/terminology/valuesets.py",
    "cds_service/hooks/request.py",
    "cds_service/clinical/model.py",
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


record_sources(COMPILED)
# The build must not depend on what else is installed: third-party packages are not read (they type as Any), and
# the service's other modules are read for their types but not checked (they are not compiled).
MYPY_OPTIONS = ("--no-site-packages", "--ignore-missing-imports", "--follow-imports=silent")
setup(ext_modules=mypycify([*MYPY_OPTIONS, *COMPILED], opt_level="3", group_name="cds_service"))
