"""The SQL connector against real PostgreSQL, on its own connection: parameters stay
parameters, reads cannot write, writes need a writable connector and run once."""

import uuid

import psycopg
import pytest

from autonomy import connectors
from autonomy.connectors import services
from autonomy.models import Connector, ConnectorKind, Effect, Operation

INJECTION = "x'; DROP TABLE {table}; --"


def dsn_of(connection) -> str:
    s = connection.settings_dict
    parts = {
        "host": s["HOST"] or "127.0.0.1", "port": s["PORT"] or 5432, "dbname": s["NAME"],
        "user": s["USER"], "password": s.get("PASSWORD") or "",
    }  # fmt: skip
    return " ".join(f"{k}={v}" for k, v in parts.items() if v != "")


@pytest.fixture
def warehouse(postgres):
    """A throwaway table, committed on a separate connection so the connector sees it."""
    dsn, table = dsn_of(postgres), f"invoices_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE {table} (id text PRIMARY KEY, amount numeric(12,2), due date)")
        conn.execute(
            f"INSERT INTO {table} VALUES ('INV-1', 120.50, '2026-12-01'), "
            f"('INV-2', 80, '2026-12-15'), ('INV-3', 5000, NULL)"
        )
    connector = Connector.objects.create(
        slug="warehouse", name="Warehouse", kind=ConnectorKind.SQL,
        config={"dsn_secret": "dsn", "timeout_seconds": 5, "max_rows": 2},
    )  # fmt: skip
    services.connector_secret_set(connector=connector, name="dsn", value=dsn, by=None)
    try:
        yield connector, table, dsn
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f"DROP TABLE IF EXISTS {table}")


def operation(connector, slug, sql, effect=Effect.READ) -> Operation:
    return Operation.objects.create(
        connector=connector, slug=slug, name=slug, effect=effect, config={"sql": sql}
    )


def count_rows(dsn: str, table: str) -> int:
    with psycopg.connect(dsn) as conn:
        return conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def test_a_read_operation_returns_json_safe_rows(warehouse):
    connector, table, _ = warehouse
    read = operation(connector, "read", f"SELECT id, amount, due FROM {table} WHERE id = %(id)s")
    result = connectors.call(operation=read, params={"id": "INV-1"}, idempotency_key="r1")
    assert result["data"] == [{"id": "INV-1", "amount": "120.50", "due": "2026-12-01"}]
    assert result["truncated"] is False


def test_an_injection_attempt_in_a_parameter_stays_a_parameter(warehouse):
    connector, table, dsn = warehouse
    read = operation(connector, "read", f"SELECT id FROM {table} WHERE id = %(id)s")
    attack = INJECTION.format(table=table)
    result = connectors.call(operation=read, params={"id": attack}, idempotency_key="r2")
    assert result["data"] == []
    assert count_rows(dsn, table) == 3


def test_rows_are_bounded_by_max_rows(warehouse):
    connector, table, _ = warehouse
    read = operation(connector, "all", f"SELECT id FROM {table} ORDER BY id")
    result = connectors.call(operation=read, params={}, idempotency_key="r3")
    assert [r["id"] for r in result["data"]] == ["INV-1", "INV-2"]
    assert result["truncated"] is True


def test_a_write_on_a_read_only_connector_is_refused(warehouse):
    connector, table, dsn = warehouse
    delete = operation(connector, "void", f"DELETE FROM {table} WHERE id = %(id)s", Effect.WRITE)
    with pytest.raises(connectors.ConnectorError, match="is read-only"):
        connectors.call(operation=delete, params={"id": "INV-1"}, idempotency_key="w1")
    assert count_rows(dsn, table) == 3


def test_a_read_operation_cannot_write_even_on_a_writable_connector(warehouse):
    connector, table, dsn = warehouse
    connector.config = {**connector.config, "read_only": False}
    connector.save()
    sneaky = operation(connector, "sneaky", f"DELETE FROM {table} WHERE id = %(id)s")
    with pytest.raises(connectors.ConnectorError, match="refused a write in a read-only"):
        connectors.call(operation=sneaky, params={"id": "INV-1"}, idempotency_key="w2")
    assert count_rows(dsn, table) == 3


def test_a_write_on_a_writable_connector_runs_once_per_idempotency_key(warehouse):
    connector, table, dsn = warehouse
    connector.config = {**connector.config, "read_only": False}
    connector.save()
    insert = operation(
        connector, "add", f"INSERT INTO {table} (id, amount) VALUES (%(id)s || '-' || "
        f"(SELECT count(*) FROM {table}), %(amount)s) RETURNING id", Effect.WRITE,
    )  # fmt: skip
    first = connectors.call(
        operation=insert, params={"id": "NEW", "amount": 7}, idempotency_key="w3"
    )
    again = connectors.call(
        operation=insert, params={"id": "NEW", "amount": 7}, idempotency_key="w3"
    )
    assert first["data"] == [{"id": "NEW-3"}] and first["row_count"] == 1
    assert again == {**first, "replayed": True}
    assert count_rows(dsn, table) == 4


def test_a_statement_past_its_timeout_is_cancelled(warehouse):
    connector, _, _ = warehouse
    connector.config = {**connector.config, "timeout_seconds": 0.2}
    connector.save()
    slow = operation(connector, "slow", "SELECT pg_sleep(%(seconds)s)")
    with pytest.raises(connectors.ConnectorError, match="past its timeout"):
        connectors.call(operation=slow, params={"seconds": 5}, idempotency_key="t1")


def test_a_missing_parameter_is_a_clear_error(warehouse):
    connector, table, _ = warehouse
    read = operation(connector, "read", f"SELECT id FROM {table} WHERE id = %(id)s")
    with pytest.raises(connectors.ConnectorError, match="needs the parameters id"):
        connectors.call(operation=read, params={}, idempotency_key="m1")


def test_an_unreachable_database_is_a_clear_error_without_the_dsn_password(warehouse):
    from tests.realparts import free_port

    connector, table, _ = warehouse
    dsn = f"host=127.0.0.1 port={free_port()} dbname=x user=u password=Pw-9x8y7z-secret"
    services.connector_secret_set(connector=connector, name="dsn", value=dsn, by=None)
    read = operation(connector, "read", f"SELECT id FROM {table} WHERE id = %(id)s")
    with pytest.raises(connectors.ConnectorError, match="could not be reached") as caught:
        connectors.call(operation=read, params={"id": "INV-1"}, idempotency_key="e1")
    assert "Pw-9x8y7z-secret" not in str(caught.value)
