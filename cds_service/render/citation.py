"""How evidence is cited in a card: "display (code system code) on date, n days ago" — never an identifier."""

from __future__ import annotations

from datetime import datetime

from cds_service.clinical.model import Evidence
from cds_service.fhir.dates import days_between

_ESCAPES = str.maketrans({char: "\\" + char for char in "\\`*_{}[]<>#|"})


def md(text: str) -> str:
    """Escape markdown and HTML control characters in text that comes from the patient's record."""
    return text.translate(_ESCAPES)


def cite(evidence: Evidence, now: datetime) -> str:
    """One evidence line, e.g. 'Laminotomy (CPT 63030) on 2024-09-01, 273 days ago'."""
    name = md(evidence.display or evidence.what)
    if evidence.value:
        name = f"{name}: {md(evidence.value)}"
    code = f" ({evidence.system_label} {md(evidence.code)})" if evidence.code and evidence.system else ""
    if evidence.date is None:
        when = ", date not recorded"
    else:
        days = days_between(evidence.date, now)
        ago = "today" if days == 0 else ("1 day ago" if days == 1 else f"{days} days ago")
        on = f" on {evidence.date.date().isoformat()}"
        when = f"{on}, {ago}" if days >= 0 else on
    return f"{name}{code}{when}"
