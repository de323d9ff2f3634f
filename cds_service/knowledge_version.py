"""A version string for the knowledge behind a card: value sets, thresholds in force, suggestions, card templates.

Cards are recorded with it, so a knowledge owner can compare acceptance before and after a change of a rule, a code
or a card text.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict
from importlib import metadata, resources

import orjson

from cds_service.clinical.knowledge import Thresholds

_PACKAGES = (("cds_service.terminology", "valuesets"), ("cds_service.clinical", ""),
             ("cds_service.card_templates", ""))


def knowledge_version(thresholds: Thresholds) -> str:
    """`<package version>+<12 hex digits of a hash of every knowledge file and the thresholds in force>`."""
    digest = hashlib.sha256()
    for package, folder in _PACKAGES:
        root = resources.files(package).joinpath(folder) if folder else resources.files(package)
        for entry in sorted(root.iterdir(), key=lambda e: e.name):
            if entry.name.endswith((".json", ".yaml")):
                digest.update(entry.name.encode())
                digest.update(entry.read_bytes())
    digest.update(orjson.dumps(asdict(thresholds), option=orjson.OPT_SORT_KEYS))
    return f"{metadata.version('cds-service')}+{digest.hexdigest()[:12]}"
