"""The embedded database (SQLite in WAL mode): checkpoints run beside requests, not in them.

In WAL mode every commit appends its pages to the write-ahead log, and by default the commit
that takes the log past 1,000 pages also copies the log back into the database file and
syncs it to disk (a *checkpoint*). On the gate's path that made one commit in about fifty
cost 12-17 ms instead of 0.2 ms: more than half of all the time spent committing (measured
over 1,000 gate requests). So each process that uses a SQLite file runs one daemon thread
that checkpoints it every ``AUTONOMY_SQLITE_CHECKPOINT_SECONDS`` (``PASSIVE``: it never
waits for, or blocks, a reader or a writer; the driver releases the GIL while SQLite works),
and commits only checkpoint themselves as a backstop when the log passes
``AUTONOMY_SQLITE_AUTOCHECKPOINT_PAGES`` (the thread has fallen behind, or died).

Durability is unchanged: a commit is in the log before it returns (``synchronous=NORMAL``
in WAL mode survives any crash of the process), and a checkpoint only moves committed pages.
PostgreSQL needs none of this.
"""

import logging
import os
import sqlite3
import threading
import time
from pathlib import Path

from django.conf import settings

log = logging.getLogger(__name__)

_lock = threading.Lock()
_running: dict[str, tuple[int, threading.Thread]] = {}  # database path -> (pid, thread)


def connection_created(sender, connection, **kwargs) -> None:
    """``connection_created`` receiver: this process's checkpoint thread for the file (the
    backstop is set by the connection's ``init_command``, ``autonomy.settings``)."""
    if connection.vendor != "sqlite":
        return
    name = str(connection.settings_dict["NAME"])
    if settings.AUTONOMY_SQLITE_CHECKPOINT_SECONDS > 0 and _is_file(name):
        ensure_checkpointer(name)


def _is_file(name: str) -> bool:
    return bool(name) and name != ":memory:" and not name.startswith("file:")


def ensure_checkpointer(path: str) -> None:
    """Start the checkpoint thread for ``path`` in this process, once (again after a fork:
    threads do not survive one)."""
    path = str(Path(path).resolve())
    pid = os.getpid()
    running = _running.get(path)
    if running and running[0] == pid and running[1].is_alive():
        return
    with _lock:
        running = _running.get(path)
        if running and running[0] == pid and running[1].is_alive():
            return
        thread = threading.Thread(
            target=_checkpoint_forever,
            args=(path, settings.AUTONOMY_SQLITE_CHECKPOINT_SECONDS),
            name="autonomy-sqlite-checkpoint",
            daemon=True,
        )
        _running[path] = (pid, thread)
        thread.start()


def _open(path: str) -> sqlite3.Connection | None:
    """A connection to the file at ``path`` that never creates it, or None when it is gone."""
    try:
        return sqlite3.connect(f"file:{path}?mode=rw", uri=True, timeout=0)
    except sqlite3.OperationalError:
        return None


def _checkpoint_on(conn: sqlite3.Connection) -> tuple[int, int, int]:
    try:
        return conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    except sqlite3.OperationalError:  # busy or locked this time: the next round does it
        return (1, -1, -1)


def checkpoint(path: str) -> tuple[int, int, int] | None:
    """One ``PASSIVE`` checkpoint of ``path``: (busy, log pages, pages checkpointed), or
    None when the file is gone (a test database dropped). Never creates the file."""
    conn = _open(path)
    if conn is None:
        return None
    try:
        return _checkpoint_on(conn)
    finally:
        conn.close()


def _checkpoint_forever(path: str, every: float) -> None:
    """Checkpoint ``path`` every ``every`` seconds until the file is gone, on one connection
    kept while the file is the same one (a new connection parses the whole schema again at
    its first statement: 4.2 ms a round against 0.01 ms on a kept one, measured on
    ``make run``'s database); a file replaced at the same path (a test database made again)
    is opened anew."""
    conn, inode = None, None
    try:
        while True:
            time.sleep(every)
            try:
                current = os.stat(path).st_ino
            except FileNotFoundError:
                with _lock:
                    if _running.get(path, (None, None))[1] is threading.current_thread():
                        del _running[path]
                return  # the file is gone; a new connection to it starts a new thread
            try:
                if conn is not None and inode != current:
                    conn.close()
                    conn = None
                if conn is None:
                    conn, inode = _open(path), current
                if conn is not None:
                    _checkpoint_on(conn)
            except Exception:  # noqa: BLE001 (the backstop keeps the log bounded meanwhile)
                log.exception("checkpointing %s failed", path)
                if conn is not None:
                    conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()
