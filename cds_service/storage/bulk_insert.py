"""Many rows into one table in one DBAPI `executemany`, with the values stored exactly as SQLAlchemy stores them."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Table, insert
from sqlalchemy.dialects import postgresql, sqlite


class BulkInsert:
    """An INSERT compiled once for the engine's dialect, run as one DBAPI `executemany` per batch.

    `connection.execute(insert(table), dicts)` processes each row's parameters in Python: for a batch of cards and
    suggestions, most of the writer's CPU time, held under the GIL the request thread needs (bench/DECISIONS.md).
    Here each row goes through its columns' own bind processors (so values are stored exactly as SQLAlchemy would
    store them and reads them back) into the shape the driver takes: tuples for positional parameters (sqlite3),
    dicts for named ones (psycopg).
    """

    def __init__(self, engine: Engine, table: Table, columns: Sequence[str], *, ignore_conflicts: bool = False) -> None:
        dialect = engine.dialect
        statement: Any = insert(table)
        if ignore_conflicts:
            # A row whose key is already stored is skipped, not an error: replaying the ledger's spool is idempotent.
            dialect_insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect.name]
            statement = dialect_insert(table).on_conflict_do_nothing()
        compiled = statement.compile(dialect=dialect, column_keys=list(columns))
        self.sql = compiled.string
        self.columns = tuple(columns)
        self.positional = bool(compiled.positional)
        if self.positional and tuple(compiled.positiontup or ()) != self.columns:
            raise ValueError(f"unexpected parameter order for {table.name}: {compiled.positiontup}")
        self.processors = [(index, name, processor) for index, name in enumerate(self.columns)
                           if (processor := table.c[name].type.dialect_impl(dialect).bind_processor(dialect))]

    def execute(self, connection: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert rows given as tuples in `columns` order."""
        if not rows:
            return
        if self.processors:
            rows = [self._processed(row) for row in rows]
        parameters = rows if self.positional else [dict(zip(self.columns, row, strict=True)) for row in rows]
        connection.exec_driver_sql(self.sql, parameters)  # type: ignore[arg-type]

    def _processed(self, row: tuple[Any, ...]) -> tuple[Any, ...]:
        values = list(row)
        for index, _name, processor in self.processors:
            values[index] = processor(values[index])
        return tuple(values)
