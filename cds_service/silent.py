"""Silent mode: a second knowledge version evaluated on every live call, its cards recorded and never returned.

A knowledge owner who changes a code, a threshold or a card runs the change silently first and compares, in the
report (`/analytics`), how often each card type would fire and which cards the change adds or drops, before turning
it on. The silent version is a folder (`CDS_SILENT_KNOWLEDGE`) whose files replace the live ones of the same name:

    valuesets/VS-19.json    value sets (cds_service/terminology/valuesets/)
    cards/opioid-order.yaml card templates, links, warning stack (cards/)
    thresholds.json         thresholds by name, over those in force (as CDS_THRESHOLDS_FILE)

Anything not in the folder is the live version's. The rules' Python is not replaceable here: a process holds one copy
of its code, so a rule change ships as a release, not as a silent version.

The silent evaluation runs once the live response has been sent (when the server closes it), in the worker's CPU slot,
on the data the live call already read (no second FHIR read): the client never waits for it. What it costs is CPU the
worker then does not spend on the next call (bench/silent.py). If it fails, or its rows cannot be recorded, the live
call is not affected: the failure is logged (its type only) and counted.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson

from cds_service.clinical.knowledge import Thresholds, declared_card_types, load_thresholds
from cds_service.cpu_slot import CpuSlot
from cds_service.knowledge_version import knowledge_version
from cds_service.render.cards import CardRenderer
from cds_service.render.catalogue import check_card_types, load_catalogue
from cds_service.services.runtime import Rerun, Runtime
from cds_service.storage.ledger import CardLedger, IssuedCardRow, SilentCallRow
from cds_service.terminology.valuesets import (
    Terminology,
    compile_value_sets,
    using_terminology,
    value_set_files,
)

log = logging.getLogger("cds_service.silent")


@dataclass(frozen=True)
class SilentKnowledge:
    """A silent knowledge version, loaded and checked at start-up like the live one."""

    folder: Path
    version: str
    thresholds: Thresholds
    terminology: Terminology
    renderer: CardRenderer


def load_silent_knowledge(folder: str, live_thresholds_file: str | None) -> SilentKnowledge:
    """The version `folder` makes over the live files; ValueError naming what is wrong (start-up refuses it)."""
    root = Path(folder)
    if not root.is_dir():
        raise ValueError(f"{folder} is not a folder")
    known = {"valuesets", "cards", "thresholds.json"}
    unknown = sorted(path.name for path in root.iterdir() if path.name not in known and not path.name.startswith("."))
    if unknown:
        raise ValueError(f"{folder}: unknown entries {unknown} (expected {', '.join(sorted(known))})")
    files: dict[str, Any] = {entry.name: entry for entry in value_set_files()}
    if (root / "valuesets").is_dir():
        files.update({path.name: path for path in (root / "valuesets").glob("*.json")})
    terminology = Terminology(compile_value_sets(files[name] for name in sorted(files)))
    overrides: Mapping[str, Any] = {}
    if (root / "thresholds.json").is_file():
        overrides = orjson.loads((root / "thresholds.json").read_bytes())
        if not isinstance(overrides, dict):
            raise ValueError(f"{root / 'thresholds.json'}: expected a JSON object of threshold names to values")
    thresholds = load_thresholds(live_thresholds_file, overrides)
    with using_terminology(terminology):  # the cards' study codings come from this version's VS-IMG
        catalogue = load_catalogue(root / "cards")
        renderer = CardRenderer(catalogue)
    check_card_types(catalogue, declared_card_types())
    return SilentKnowledge(root, knowledge_version(thresholds, root), thresholds, terminology, renderer)


@dataclass(frozen=True)
class SilentCall:
    """What the silent evaluation of one call needs once the response is out."""

    rerun: Rerun
    runtime: Runtime
    service_id: str
    hook: str
    live_version: str
    live_card_types: tuple[str, ...]
    source: str
    rows: Callable[[list[dict[str, Any]]], list[IssuedCardRow]]   # the silent cards' ledger rows


def evaluate_silently(call: SilentCall, knowledge: SilentKnowledge, ledger: CardLedger, slot: CpuSlot) -> None:
    """Evaluate the call under the silent version and record its cards (marked silent) and the comparison row."""
    from cds_service.metrics import SILENT_EVALUATIONS  # noqa: PLC0415 (after multiprocess metrics are set up)

    if call.rerun.evaluate is None:
        return
    try:
        with slot.held(), using_terminology(knowledge.terminology):
            cards = call.rerun.evaluate(replace(call.runtime, thresholds=knowledge.thresholds,
                                                renderer=knowledge.renderer, rerun=None))
            silent_types = tuple(card["source"]["topic"]["code"] for card in cards)
            rows: list[Any] = call.rows(cards)
            rows.append(SilentCallRow(
                call_uuid=str(uuid.uuid4()), service_id=call.service_id, hook=call.hook,
                source=call.source, evaluated_at=call.runtime.now, live_version=call.live_version,
                silent_version=knowledge.version, live_card_types=" ".join(call.live_card_types),
                silent_card_types=" ".join(silent_types)))
            ledger.record(rows)
    except Exception as exc:  # the live answer is out and unaffected; the silent one is lost, and said so
        SILENT_EVALUATIONS.labels(outcome="failed").inc()
        log.error("silent evaluation failed", extra={"error_type": type(exc).__name__})
        return
    SILENT_EVALUATIONS.labels(outcome="recorded").inc()
