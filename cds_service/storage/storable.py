"""Text made storable at the boundary: what a client sent must not make the database refuse a row.

PostgreSQL refuses NUL characters in text and values longer than a `VARCHAR(n)`; the UTF-8 encoders of both drivers
refuse lone surrogates (a JSON `\\ud800` escape decodes to one). Each is a row the database would reject, taking the
rest of its batch with it, so text from a request is cleaned here before it reaches a row: NUL removed, lone
surrogates replaced, cut to the column's length (read from the model, declared once).
"""

from __future__ import annotations

from sqlalchemy import Column


def storable(value: str, column: Column) -> str:
    """`value` as the column can store it."""
    if not value.isascii():
        value = value.encode("utf-8", "replace").decode("utf-8")  # a lone surrogate becomes "?"
    if "\x00" in value:
        value = value.replace("\x00", "")
    length = getattr(column.type, "length", None)
    return value[:length] if length else value


def storable_or_none(value: object, column: Column) -> str | None:
    """A storable string, or None for anything that is not a string (an optional column)."""
    return storable(value, column) if isinstance(value, str) else None
