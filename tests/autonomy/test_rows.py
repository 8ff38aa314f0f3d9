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
