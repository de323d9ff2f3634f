"""FHIR date, dateTime, instant and Age values as UTC datetimes; anything unreadable is None, never "now".

Partial dates are real in clinical data ("2019", "2019-05"): they are read as the first instant of the period they
name. Date-only values are midnight UTC. A value that cannot be read is unknown (None) and so never counts as evidence.

Values are read within bounds, so arithmetic on them cannot overflow (a year-9999 date plus a supply duration did, and
answered 500): dates before 1800 or from 2200 on, and ages or durations over 200 years, are unknown too.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from typing import Any

_PARTIAL = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?$")
_DAY = 86400.0
EARLIEST = datetime(1800, 1, 1, tzinfo=UTC)
LATEST = datetime(2200, 1, 1, tzinfo=UTC)
MAX_DAYS = 200 * 365.25  # the longest age or duration read
MAX_DATE_LENGTH = 40  # "2019-05-01T12:34:56.123456789+14:00" is 35

# UCUM / common units of FHIR Age and Duration, in days.
_UNIT_DAYS = {
    "a": 365.25, "yr": 365.25, "year": 365.25, "years": 365.25,
    "mo": 30.4375, "month": 30.4375, "months": 30.4375,
    "wk": 7.0, "week": 7.0, "weeks": 7.0,
    "d": 1.0, "day": 1.0, "days": 1.0,
    "h": 1 / 24, "hour": 1 / 24, "hours": 1 / 24,
}


def parse_datetime(value: Any) -> datetime | None:
    """A FHIR date/dateTime/instant string as an aware UTC datetime, or None."""
    if not isinstance(value, str) or not value or len(value) > MAX_DATE_LENGTH:
        return None  # longer than any FHIR instant: not a date, and not worth a place in the cache
    return _parse(value)


@lru_cache(maxsize=20_000)
def _parse(value: str) -> datetime | None:
    """Cached: records repeat the same dates, and datetimes are immutable. At most 20,000 short keys (bench/BURST.md
    measures what a burst of unique ones leaves)."""
    match = _PARTIAL.match(value)
    try:
        if match:
            year, month, day = match.groups()
            parsed = datetime(int(year), int(month or 1), int(day or 1), tzinfo=UTC)
        else:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            parsed = parsed.astimezone(UTC)
    except (ValueError, OverflowError):  # OverflowError: an offset pushing year 1 or 9999 out of range
        return None
    return parsed if EARLIEST <= parsed < LATEST else None


def parse_date(value: Any) -> date | None:
    parsed = parse_datetime(value)
    return parsed.date() if parsed else None


def quantity_days(quantity: Any) -> float | None:
    """A FHIR Age/Duration quantity in days (by `code`, else `unit`), or None."""
    if not isinstance(quantity, dict):
        return None
    value = quantity.get("value")
    if not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= MAX_DAYS:
        return None
    unit = quantity.get("code") or quantity.get("unit")
    factor = _UNIT_DAYS.get(unit.strip().lower()) if isinstance(unit, str) else None
    days = value * factor if factor else None
    return days if days is not None and days <= MAX_DAYS else None


def add_age(birth: date | None, age: Any) -> datetime | None:
    """birthDate + onsetAge / performedAge."""
    days = quantity_days(age)
    if birth is None or days is None:
        return None
    return datetime(birth.year, birth.month, birth.day, tzinfo=UTC) + timedelta(days=days)


def days_between(earlier: datetime, later: datetime) -> int:
    """Whole days from `earlier` to `later`: floor((later - earlier) / 1 day), as clinical-rules F2 defines it."""
    return int((later - earlier).total_seconds() // _DAY)


def first_datetime(*values: Any) -> datetime | None:
    """The first of several candidate values that parses (FHIR's x-or-y-or-z date fallbacks)."""
    for value in values:
        parsed = parse_datetime(value)
        if parsed is not None:
            return parsed
    return None
