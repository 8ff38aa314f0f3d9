"""SQL (PostgreSQL): an operation is one parameterised statement, run on its own connection.

Connector ``config``: ``dsn_secret`` (name of the secret holding the libpq DSN or URL),
``read_only`` (true unless set false), ``timeout_seconds`` (10, the statement timeout and the
connect timeout) and ``max_rows`` (1000). Operation ``config.sql`` uses named placeholders
``%(name)s`` only; the values always travel to the server as bound parameters, never as text.

Reads run in a ``READ ONLY`` transaction whatever the connector allows. A write needs both an
operation whose effect is write or delete and a connector with ``read_only: false``; it is
at most once: its intent is recorded before the statement runs (``receipts.claim``), because
the target database knows nothing of the action id.
"""

import base64
import datetime
import decimal
import re
import uuid

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from autonomy.connectors import receipts, vault
from autonomy.connectors.errors import ConnectorError
from autonomy.models import Effect, Operation

NAMED = re.compile(r"%\((\w+)\)s")


def json_safe(value):
    """A database value as JSON: exact decimals as strings, times in ISO 8601, bytes base64."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, memoryview)):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    return str(value)


def _bound(value):
    return Jsonb(value) if isinstance(value, dict) else value


def _arguments(operation: Operation, sql: str, params: dict) -> dict:
    names = set(NAMED.findall(sql))
    missing = sorted(n for n in names if n not in params)
    if missing:
        raise ConnectorError(f"{operation.key} needs the parameters {', '.join(missing)}.")
    return {name: _bound(params[name]) for name in names}


class _NotDone(Exception):
    """The statement certainly had no effect: the connection failed or the transaction
    rolled back. Anything else (a failure while committing) leaves the outcome unknown."""

    def __init__(self, error: psycopg.Error):
        super().__init__(str(error))
        self.error = error


def _run(dsn: str, sql: str, args: dict, *, read_only: bool, timeout: float, max_rows: int):
    try:
        conn = psycopg.connect(dsn, connect_timeout=max(1, int(timeout)), autocommit=True)
    except psycopg.Error as exc:
        raise _NotDone(exc) from None
    with conn:
        with conn.transaction(), conn.cursor(row_factory=dict_row) as cursor:
            try:
                if read_only:
                    cursor.execute("SET TRANSACTION READ ONLY")
                cursor.execute(
                    "SELECT set_config('statement_timeout', %s, true)",
                    [f"{int(timeout * 1000)}ms"],
                )
                cursor.execute(sql, args)
                rows = cursor.fetchmany(max_rows + 1) if cursor.description else []
                count = cursor.rowcount
            except psycopg.Error as exc:
                raise _NotDone(exc) from None
    return {
        "data": [{k: json_safe(v) for k, v in row.items()} for row in rows[:max_rows]],
        "row_count": count,
        "truncated": len(rows) > max_rows,
    }


def _message(system: str, exc: psycopg.Error) -> str:
    if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
        return f"{system} refused a write in a read-only operation."
    if isinstance(exc, psycopg.errors.QueryCanceled):
        return f"{system}: the statement ran past its timeout."
    if isinstance(exc, psycopg.OperationalError) and exc.diag.sqlstate is None:
        return f"{system} could not be reached ({type(exc).__name__})."
    return f"{system}: {type(exc).__name__}: {exc.diag.message_primary or 'failed'}"


def execute(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    connector = operation.connector
    config = connector.config
    sql = (operation.config or {}).get("sql")
    if not sql:
        raise ConnectorError(f"{operation.key} has no SQL (operation config 'sql').")
    writes = operation.effect != Effect.READ
    if writes and config.get("read_only", True) is not False:
        raise ConnectorError(
            f"{operation.key} writes, and connector {connector.slug!r} is read-only."
        )
    args = _arguments(operation, sql, params)
    dsn = vault.secret_value(connector, config.get("dsn_secret") or "dsn")
    run = dict(
        read_only=not writes,
        timeout=float(config.get("timeout_seconds") or 10),
        max_rows=int(config.get("max_rows") or 1000),
    )
    if not writes:
        try:
            return {**_run(dsn, sql, args, **run), "replayed": False}
        except _NotDone as not_done:
            raise ConnectorError(_message(connector.name, not_done.error)) from None
        except psycopg.Error as exc:
            raise ConnectorError(_message(connector.name, exc)) from None
    earlier = receipts.claim(operation=operation, params=params, idempotency_key=idempotency_key)
    if earlier is not None:
        return receipts.replay_or_refuse(earlier, system=connector.name)
    try:
        result = _run(dsn, sql, args, **run)
    except _NotDone as not_done:
        receipts.release(idempotency_key=idempotency_key)
        raise ConnectorError(_message(connector.name, not_done.error)) from None
    except psycopg.Error as exc:  # while committing: the intent stays, the outcome is unknown
        raise ConnectorError(
            f"{_message(connector.name, exc)} The write's outcome is unknown; it is not repeated."
        ) from None
    receipts.finish(idempotency_key=idempotency_key, result=result)
    return {**result, "replayed": False}
