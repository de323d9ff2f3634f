"""Thresholds and the suggestion catalogue, read from the data files beside this module.

Knowledge owners tune these files, not Python. A deployment can override thresholds with a JSON file
(`CDS_THRESHOLDS_FILE`); unknown names and wrong types are refused at start-up.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any

import orjson


@dataclass(frozen=True)
class Thresholds:
    """Every number the rules use (clinical-rules §2.3); field names are the file's names in lower case."""

    early_postop_days: int
    persistent_days: int
    scs_min_postop_days: int
    conservative_lookback_days: int
    min_analgesic_exposure_days: int
    long_term_opioid_days: int
    opioid_chain_gap_days: int
    medication_default_supply_days: int
    imaging_suppress_days: int
    pain_present_score: float
    pain_lookback_days: int
    pain_scs_score: float
    hba1c_uncontrolled_percent: float
    hba1c_suboptimal_percent: float
    hba1c_lookback_days: int
    bmi_risk: float
    bmi_class3: float
    bmi_obese: float
    bmi_lookback_days: int
    smoking_lookback_days: int
    red_flag_recent_days: int
    fever_postop_days: int
    new_symptom_days: int
    fracture_recent_days: int
    malignancy_active_days: int
    older_patient_age: int
    multiply_operated_surgeries: int


def _data(name: str) -> Any:
    return orjson.loads(resources.files(__package__).joinpath(name).read_bytes())


def threshold_definitions() -> Mapping[str, Mapping[str, Any]]:
    """The thresholds file's entries: value, unit, meaning and source per name."""
    return MappingProxyType(_data("thresholds.json")["thresholds"])


def load_thresholds(override_file: str | None = None, overrides: Mapping[str, Any] | None = None) -> Thresholds:
    """The default thresholds, then those of `override_file` (JSON object of NAME: value), then `overrides`."""
    values: dict[str, Any] = {name: entry["value"] for name, entry in threshold_definitions().items()}
    changes: dict[str, Any] = {}
    if override_file:
        loaded = orjson.loads(Path(override_file).read_bytes())
        if not isinstance(loaded, dict):
            raise ValueError(f"{override_file}: expected a JSON object of threshold names to values")
        changes.update(loaded)
    changes.update(overrides or {})
    for name, value in changes.items():
        if name not in values:
            raise ValueError(f"unknown threshold {name!r}")
        if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
            raise ValueError(f"threshold {name} must be a non-negative number, not {value!r}")
        values[name] = value
    declared = {f.name for f in fields(Thresholds)}
    if {name.lower() for name in values} != declared:
        raise ValueError("thresholds.json and the Thresholds fields disagree")
    return Thresholds(**{name.lower(): value for name, value in values.items()})


@cache
def suggestion_catalogue() -> Mapping[str, Any]:
    """What each finding type suggests, by region (suggestions.json)."""
    catalogue = _data("suggestions.json")
    catalogue.pop("description", None)
    return MappingProxyType(catalogue)


@cache
def card_types() -> Mapping[str, tuple[str, ...]]:
    """The card types of each workflow (`patient-view`, `orders`: order-select and order-sign), in response order
    (card-types.json): the one declaration the rules, the renderer's start-up check and the tests read."""
    declared = _data("card-types.json")
    for key in ("description", ALWAYS_ANSWERED):
        declared.pop(key, None)
    return MappingProxyType({workflow: tuple(types) for workflow, types in declared.items()})


def declared_card_types() -> tuple[str, ...]:
    """Every card type card-types.json declares, whatever its workflow (each once)."""
    return tuple(dict.fromkeys(card_type for types in card_types().values() for card_type in types))


ALWAYS_ANSWERED = "always-answered"


@cache
def always_answered_card_types() -> frozenset[str]:
    """The card types no site option may turn off or filter out (card-types.json `always-answered`: the red flags);
    each must be a declared card type (ValueError otherwise, at start-up)."""
    always = frozenset(_data("card-types.json")[ALWAYS_ANSWERED])
    undeclared = sorted(always - set(declared_card_types()))
    if undeclared:
        raise ValueError(f"card-types.json: always-answered names undeclared card types {undeclared}")
    return always


def fired_card_types(*modules: Any) -> dict[str, set[str]]:
    """The card types each module's rules fire: the literal first argument of every `Finding(...)` in its source
    (read beside the module, compiled or not). Start-up compares them with the declaration (`check_fired`)."""
    fired: dict[str, set[str]] = {}
    for module in modules:
        source = Path(module.__file__).parent / (module.__name__.rpartition(".")[2] + ".py")
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Finding" \
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                fired.setdefault(node.args[0].value, set()).add(source.name)
    return fired


def check_fired(fired: Mapping[str, set[str]], declared: Mapping[str, tuple[str, ...]]) -> None:
    """A rule firing a card type the declaration lacks would have its finding dropped from every response: refused
    at start-up, naming it; so is a declared card type no rule fires."""
    known = {card_type for types in declared.values() for card_type in types}
    undeclared = sorted(f"{card_type} (fired in {', '.join(sorted(files))})" for card_type, files in fired.items()
                        if card_type not in known)
    unfired = sorted(known - set(fired))
    if undeclared or unfired:
        raise ValueError("card types out of step between the rules and clinical/card-types.json: " + "; ".join(
            part for part in (f"not declared: {', '.join(undeclared)}" if undeclared else "",
                              f"declared but fired by no rule: {', '.join(unfired)}" if unfired else "") if part))
