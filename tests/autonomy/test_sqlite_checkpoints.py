"""The embedded database's write-ahead log is checkpointed by a thread beside the requests
(``autonomy.sqlite``). Run on a SQLite file of the test's own, whatever database the suite
uses."""

import os
import sqlite3
import time

from autonomy import sqlite


def wal_database(path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA wal_autocheckpoint=0")  # only a checkpoint we run moves pages
    conn.execute("CREATE TABLE t (x TEXT)")
    return conn


def write(conn, rows: int) -> None:
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO t VALUES (?)", [("x" * 500,) for _ in range(rows)])
    conn.execute("COMMIT")


def test_a_checkpoint_moves_the_logged_pages_into_the_file(tmp_path):
    path = str(tmp_path / "db.sqlite3")
    conn = wal_database(path)
    write(conn, 200)
    before = os.path.getsize(path)
    busy, logged, moved = sqlite.checkpoint(path)
    assert busy == 0 and logged > 0 and moved == logged
    assert os.path.getsize(path) > before
    conn.close()


def test_a_missing_file_is_not_created(tmp_path):
    path = str(tmp_path / "gone.sqlite3")
    assert sqlite.checkpoint(path) is None
    assert not os.path.exists(path)


def test_the_thread_checkpoints_what_commits_leave_in_the_log(tmp_path, settings):
    settings.AUTONOMY_SQLITE_CHECKPOINT_SECONDS = 0.05
    path = str(tmp_path / "busy.sqlite3")
    conn = wal_database(path)
    write(conn, 200)
    before = os.path.getsize(path)
    sqlite.ensure_checkpointer(path)
    sqlite.ensure_checkpointer(path)  # once per process and file
    threads = [t for t in sqlite._running.values() if t[1].is_alive()]
    assert sum(1 for pid, t in threads if pid == os.getpid()) >= 1
    deadline = time.monotonic() + 10
    while os.path.getsize(path) <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.getsize(path) > before, "nothing checkpointed the log"
    conn.close()
    os.remove(path)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    thread = sqlite._running[str(tmp_path.resolve() / "busy.sqlite3")][1]
    thread.join(timeout=10)
    assert not thread.is_alive(), "the thread outlived its file"
    assert not os.path.exists(path)


def test_only_files_get_a_thread():
    assert sqlite._is_file("/var/db.sqlite3")
    assert not sqlite._is_file(":memory:")
    assert not sqlite._is_file("file:memorydb_default?mode=memory&cache=shared")


def test_the_thread_keeps_one_connection_until_the_file_is_replaced(
    tmp_path, settings, monkeypatch
):
    settings.AUTONOMY_SQLITE_CHECKPOINT_SECONDS = 0.02
    path = str(tmp_path / "kept.sqlite3")
    wal_database(path).close()
    opened = []
    real_open = sqlite._open
    monkeypatch.setattr(sqlite, "_open", lambda p: opened.append(p) or real_open(p))
    sqlite.ensure_checkpointer(path)
    time.sleep(0.5)  # ~25 rounds
    assert len(opened) == 1, "a new connection every round"
    # A new file put in its place (as a test database made again): opened anew, and its
    # log checkpointed.
    replacement = str(tmp_path / "new.sqlite3")
    conn = wal_database(replacement)
    write(conn, 200)
    os.replace(replacement, path)
    os.replace(replacement + "-wal", path + "-wal")
    conn.close()  # the log stays (a file's last close checkpoints it: reopen to keep it)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint=0")
    write(conn, 200)
    before = os.path.getsize(path)
    deadline = time.monotonic() + 10
    while os.path.getsize(path) <= before and time.monotonic() < deadline:
        time.sleep(0.02)
    assert os.path.getsize(path) > before, "the new file's log was not checkpointed"
    assert len(opened) == 2
    conn.close()
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(path + suffix):
            os.remove(path + suffix)
    thread = sqlite._running[str(tmp_path.resolve() / "kept.sqlite3")][1]
    thread.join(timeout=10)
    assert not thread.is_alive()
