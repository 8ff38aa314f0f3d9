"""Per-minute counter rows, as the dashboard's rollups and the gate's usage counters keep them:
one statement adds an event to its row, creating the row when it is missing."""

import functools
from datetime import datetime

from django.db import connection, connections


def minute_of(moment: datetime) -> datetime:
    """The minute a counter row for ``moment`` is kept under."""
    return moment.replace(second=0, microsecond=0)


def add_sql(model, keys: tuple[str, ...], adds: tuple[str, ...], rows: int = 1) -> str:
    """``INSERT (keys, adds) VALUES (%(name)s, ...) ON CONFLICT (keys) DO UPDATE`` adding
    each of ``adds`` to the row's current value (SQLite 3.24+ and PostgreSQL), for the
    current connection; built once per database alias. Parameters are named after the
    fields (a dict): Django's SQLite backend rewrites positional ones with a regular
    expression on every call. With ``rows`` > 1, that many rows (of distinct keys) in one
    statement, their parameters named ``<field>_<i>``."""
    return _add_sql(connection.alias, model._meta.label, keys, adds, rows)


@functools.cache
def _add_sql(
    alias: str, label: str, keys: tuple[str, ...], adds: tuple[str, ...], rows: int
) -> str:
    from django.apps import apps

    meta, quote = apps.get_model(label)._meta, connections[alias].ops.quote_name
    table = quote(meta.db_table)
    key_columns = [quote(meta.get_field(name).column) for name in keys]
    add_columns = [quote(meta.get_field(name).column) for name in adds]
    increments = ", ".join(f"{c} = {table}.{c} + excluded.{c}" for c in add_columns)
    suffixes = [""] if rows == 1 else [f"_{i}" for i in range(rows)]
    values = ", ".join(
        "(" + ", ".join(f"%({name}{suffix})s" for name in keys + adds) + ")" for suffix in suffixes
    )
    return (
        f"INSERT INTO {table} ({', '.join(key_columns + add_columns)})"
        f" VALUES {values}"
        f" ON CONFLICT ({', '.join(key_columns)}) DO UPDATE SET {increments}"
    )
