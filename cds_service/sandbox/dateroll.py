"""Shift every date in a FHIR resource by a whole number of days, so fixtures written against an anchor never age.

Any string value that is a FHIR date, dateTime or instant (`2024`, `2024-09`, `2024-09-01`, `2024-09-01T10:00:00Z`)
is moved; partial dates keep their precision. Codes, ids and text never look like dates in these fixtures.
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from typing import Any

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$")
_YEAR_MONTH = re.compile(r"^\d{4}-\d{2}$")


def shift_value(value: str, days: int) -> str:
    if _DATE.match(value):
        return (date.fromisoformat(value) + timedelta(days=days)).isoformat()
    if _DATETIME.match(value):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        shifted = (parsed + timedelta(days=days)).isoformat()
        return shifted.replace("+00:00", "Z") if value.endswith("Z") else shifted
    if _YEAR_MONTH.match(value):
        moved = date.fromisoformat(value + "-15") + timedelta(days=days)
        return f"{moved.year:04d}-{moved.month:02d}"
    return value


def roll(value: Any, days: int) -> Any:
    """A copy of a JSON value with every date shifted by `days` days."""
    if days == 0:
        return value
    if isinstance(value, dict):
        return {key: roll(item, days) for key, item in value.items()}
    if isinstance(value, list):
        return [roll(item, days) for item in value]
    if isinstance(value, str):
        return shift_value(value, days)
    return value
