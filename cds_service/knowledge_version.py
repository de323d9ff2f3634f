"""A version string for the knowledge behind a card: value sets, thresholds in force, suggestions, card templates,
and the rules' own source (cds_service/clinical/*.py).

Cards are recorded with it, so a knowledge owner can compare acceptance before and after a change of a rule, a code
or a card text. A rule lives in Python, so its source counts too: a changed rule under an unchanged version would mix
its acceptance with the old rule's.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from importlib import metadata, resources
from pathlib import Path

import orjson

from cds_service.clinical.knowledge import Thresholds

# (package, folder, file endings): the knowledge files, and the clinical package's Python (the rules themselves).
_PACKAGES = (("cds_service.terminology", "valuesets", (".json",)),
             ("cds_service.clinical", "", (".json", ".yaml", ".py")),
             ("cds_service.card_templates", "", (".json", ".yaml")))


def knowledge_files() -> list[tuple[str, bytes]]:
    """Every file the knowledge version covers, as (package/name, content), in a fixed order."""
    files = []
    for package, folder, endings in _PACKAGES:
        root = resources.files(package).joinpath(folder) if folder else resources.files(package)
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(endings):
                files.append((f"{package}/{entry.name}", entry.read_bytes()))
    return files


OVERLAY_FOLDERS = {"cds_service.terminology": "valuesets", "cds_service.card_templates": "cards"}
"""Where a silent knowledge version's folder holds the files that replace each package's (cds_service/silent.py)."""


def overlaid_files(overlay: Path | None) -> list[tuple[str, bytes]]:
    """`knowledge_files()`, each replaced by a file of the same name in the overlay's subfolder (in place: the same
    files give the same version), files new to the overlay after them."""
    files = dict(knowledge_files())
    if overlay is not None:
        for package, folder in OVERLAY_FOLDERS.items():
            if (overlay / folder).is_dir():
                files.update({f"{package}/{path.name}": path.read_bytes()
                              for path in sorted((overlay / folder).iterdir()) if path.suffix in (".json", ".yaml")})
    return list(files.items())


def knowledge_version(thresholds: Thresholds, overlay: Path | None = None) -> str:
    """`<package version>+<12 hex digits of a hash of every knowledge file and the thresholds in force>`; with
    `overlay`, of the silent knowledge version that folder makes."""
    digest = hashlib.sha256()
    for name, content in overlaid_files(overlay) if overlay is not None else knowledge_files():
        digest.update(name.encode())
        digest.update(content)
    digest.update(orjson.dumps(asdict(thresholds), option=orjson.OPT_SORT_KEYS))
    return f"{metadata.version('cds-service')}+{digest.hexdigest()[:12]}"
