"""Whether the request path's compiled modules were built from the sources beside them.

setup.py compiles the request path's pure modules with mypyc and records the SHA-256 of each source it compiled
(`compiled-sources.json`). With an editable install (`make run`, `make test`) each extension sits next to its `.py`
and Python imports the extension first: a source edited after the install would be silently ignored, and the service
would run rules that are not the ones in the repository. At start-up every compiled module's source is hashed again
(a fraction of a millisecond) and a mismatch stops the start, saying what to do.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from collections.abc import Mapping
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

SOURCES_RECORD = Path(__file__).with_name("compiled-sources.json")


class StaleBuild(RuntimeError):
    """A compiled module was built from a source that has changed since: its behaviour is not the source's."""


def recorded_sources(path: Path | None = None) -> dict[str, str]:
    """Module name -> SHA-256 of the source it was compiled from (default: the install's record); empty when nothing
    was compiled (a source tree used without installing it)."""
    try:
        return json.loads((path or SOURCES_RECORD).read_text())
    except FileNotFoundError:
        return {}


def compiled_modules(record: Mapping[str, str]) -> dict[str, Path]:
    """The recorded modules that are imported from a compiled extension here, with the extension's path."""
    found = {}
    for name in record:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin is not None and spec.origin.endswith(tuple(EXTENSION_SUFFIXES)):
            found[name] = Path(spec.origin)
    return found


def stale_modules(record: Mapping[str, str]) -> list[str]:
    """Compiled modules whose source beside them is missing or differs from the source they were built from."""
    stale = []
    for name, extension in compiled_modules(record).items():
        source = extension.parent / f"{name.rpartition('.')[2]}.py"
        if not source.is_file() or hashlib.sha256(source.read_bytes()).hexdigest() != record[name]:
            stale.append(name)
    return stale


def check_compiled_sources(path: Path | None = None) -> None:
    """Refuse to go on when a compiled module is older than its source (see the module docstring)."""
    stale = stale_modules(recorded_sources(path))
    if stale:
        raise StaleBuild(
            f"These modules were compiled from an older version of their source: {', '.join(stale)}. Build them "
            "again with `make install` (or `pip install -e .`); the service will not run code that differs from "
            "its source.")
