"""``autonomy.rows.cursor``: one cursor kept per database connection for the hot paths."""

import threading

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext

from autonomy import rows


def select_one(conn) -> int:
    with rows.cursor(conn) as cursor:
        cursor.execute("SELECT 1")
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_the_cursor_is_kept_per_connection_and_statements_are_still_captured():
    real = connections["default"]
    with rows.cursor(connection) as first, rows.cursor(real) as second:
        assert first is second  # the proxy resolves to this thread's connection
    assert select_one(connection) == 1
    with CaptureQueriesContext(real) as captured:
        assert select_one(connection) == 1
        with rows.cursor(real) as logging:
            assert logging is not first  # a logging cursor while queries are logged
    assert [q["sql"] for q in captured.captured_queries] == ["SELECT 1"]


@pytest.mark.django_db(transaction=True)
def test_a_new_connection_gets_a_new_cursor():
    with rows.cursor(connection) as before:
        pass
    connection.close()
    assert select_one(connection) == 1  # reconnects
    with rows.cursor(connection) as after:
        assert after is not before


@pytest.mark.django_db(transaction=True)
def test_another_thread_never_gets_this_threads_cursor():
    with rows.cursor(connection) as mine:
        pass
    seen = {}

    def other():
        try:
            with rows.cursor(connection) as theirs:
                seen["same"] = theirs is mine
                theirs.execute("SELECT 1")
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen == {"same": False}


@pytest.mark.django_db(transaction=True)
def test_driver_errors_are_djangos_on_execute_and_on_fetch():
    from django.db import IntegrityError, transaction

    from agents.models import BusinessUnit

    with transaction.atomic():
        rows.insert(BusinessUnit(name="Clash", slug="clash"))
    with pytest.raises(IntegrityError), transaction.atomic():
        rows.insert(BusinessUnit(name="Clash", slug="clash"))
    # Several rows in one statement: a clash on a later row may surface while fetching.
    with pytest.raises(IntegrityError), transaction.atomic():
        rows._insert_many(
            connections["default"],
            [BusinessUnit(name="New", slug="new"), BusinessUnit(name="Clash", slug="clash")],
        )
    assert sorted(BusinessUnit.objects.values_list("slug", flat=True)) == ["clash"]


@pytest.mark.django_db
def test_execute_wrappers_see_the_kept_cursors_statements():
    from agents.models import BusinessUnit

    unit = BusinessUnit(name="Seen", slug="seen")
    rows.insert(unit)
    seen = []

    def wrapper(execute, sql, params, many, context):
        seen.append(sql)
        return execute(sql, params, many, context)

    unit.description = "watched"
    with connection.execute_wrapper(wrapper):
        rows.update(unit, ["description"])
        assert select_one(connection) == 1
    assert len(seen) == 2 and seen[0].startswith("UPDATE")
    rows.update(unit, ["description"])  # and no longer once it is gone
    assert len(seen) == 2
    assert BusinessUnit.objects.get(pk=unit.pk).description == "watched"


@pytest.mark.django_db
def test_positional_parameters_go_through_djangos_cursor():
    with rows.cursor(connection) as cursor:
        cursor.execute("SELECT %s + %s", [2, 3])
        assert cursor.fetchone()[0] == 5
        cursor.execute("SELECT %(a)s || '%%'", {"a": "50"})  # a literal percent sign, named
        assert cursor.fetchone()[0] == "50%"


@pytest.mark.django_db(transaction=True)
def test_db_is_djangos_connection_for_this_thread_and_in_an_event_loop():
    import asyncio

    from asgiref.sync import sync_to_async
    from django.db import transaction

    assert rows._THREAD_CONNECTIONS is not None  # the shortcut is in use here
    assert rows.db() is transaction.get_connection() is connections["default"]
    seen = {}

    def other():
        try:
            seen["thread"] = (rows.db(), connections["default"])
        finally:
            connections.close_all()

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert seen["thread"][0] is seen["thread"][1] is not rows.db()

    async def in_a_loop():
        # Django's Local answers per async context here: db() must give what it gives.
        seen["loop"] = (rows.db(), connections["default"])
        seen["sync"] = await sync_to_async(lambda: (rows.db(), connections["default"]))()

    asyncio.run(in_a_loop())
    assert seen["loop"][0] is seen["loop"][1]
    assert seen["sync"][0] is seen["sync"][1]
