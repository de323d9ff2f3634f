"""Prefetch templates, loaded from data once at import.

Kept in a data file because the observation codes are clinical knowledge (value-set members), reviewed with the
rest of the knowledge rather than in Python.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from types import MappingProxyType
from typing import Any

import orjson

# CDS Hooks 2.0 tokens for patient-view / order-select / order-sign (CDS Hooks 2.0, 'Prefetch tokens').
TOKEN_2_0 = re.compile(
    r"\{\{(context\.(userId|patientId|encounterId)|userPractitionerId|userPractitionerRoleId|userPatientId"
    r"|userRelatedPersonId)\}\}"
)


def _load() -> dict[str, MappingProxyType]:
    raw = orjson.loads(resources.files(__package__).joinpath("prefetch-templates.json").read_bytes())
    return {name: MappingProxyType(templates) for name, templates in raw.items() if isinstance(templates, dict)}


_TEMPLATES = _load()

PATIENT_RECORD = _TEMPLATES["patient-record"]
"""The templates of every service that evaluates the patient record (all three hooks do)."""


def invalid_tokens(template: str) -> list[str]:
    """The `{{...}}` parts of a template that CDS Hooks 2.0 does not allow (empty when the template is valid)."""
    remainder = TOKEN_2_0.sub("", template)
    return re.findall(r"\{\{.*?\}\}", remainder) + (["{{ or }}"] if "{{" in remainder or "}}" in remainder else [])


_FILLED_TOKEN = re.compile(r"\{\{\s*([A-Za-z.]+)\s*\}\}")


def render_template(template: str, context: Mapping[str, Any]) -> str | None:
    """Fill `{{context.x}}` and `{{userPractitionerId}}`-style tokens; None when a token has no value."""
    values = dict(context)
    user = context.get("userId")
    if isinstance(user, str) and "/" in user:
        kind, _, ident = user.partition("/")
        values[f"user{kind}Id"] = ident
    missing = False

    def fill(match: re.Match[str]) -> str:
        nonlocal missing
        name = match.group(1)
        key = name[len("context."):] if name.startswith("context.") else name
        value = values.get(key)
        if not isinstance(value, str) or not value:
            missing = True
            return ""
        return value

    rendered = _FILLED_TOKEN.sub(fill, template)
    return None if missing else rendered
