"""The demo systems' state: one SQLite file, so a restart keeps every record.

Records are JSON documents keyed by (system, kind, id). Answers to writes are kept by
(system, Idempotency-Key), so a repeated request gets the first answer and makes no second
record. Writes are serialised by one lock: the demo serves a laptop, not a data centre.
"""

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    system TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, data TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (system, kind, id));
CREATE TABLE IF NOT EXISTS sequences (name TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS idempotency (
    system TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, status INTEGER NOT NULL,
    body TEXT NOT NULL, created_at TEXT NOT NULL, PRIMARY KEY (system, key));
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class Store:
    def __init__(self, path: Path | str):
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self.lock = threading.RLock()
        with self.lock:
            self._db().executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite3.connect(self.path, timeout=10, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
        return db

    def get(self, system: str, kind: str, id: str) -> dict | None:
        row = (
            self._db()
            .execute(
                "SELECT data FROM records WHERE system=? AND kind=? AND id=?", (system, kind, id)
            )
            .fetchone()
        )
        return json.loads(row[0]) if row else None

    def put(self, system: str, kind: str, id: str, data: dict) -> dict:
        stamp = now()
        self._db().execute(
            "INSERT INTO records (system, kind, id, data, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (system, kind, id) "
            "DO UPDATE SET data=excluded.data, updated_at=excluded.updated_at",
            (system, kind, id, json.dumps(data), stamp, stamp),
        )
        return data

    def delete(self, system: str, kind: str, id: str) -> bool:
        cursor = self._db().execute(
            "DELETE FROM records WHERE system=? AND kind=? AND id=?", (system, kind, id)
        )
        return cursor.rowcount > 0

    def list(self, system: str, kind: str, *, limit: int = 100) -> list[dict]:
        rows = self._db().execute(
            "SELECT data FROM records WHERE system=? AND kind=? ORDER BY created_at, id LIMIT ?",
            (system, kind, limit),
        )
        return [json.loads(data) for (data,) in rows]

    def count(self, system: str, kind: str) -> int:
        return (
            self._db()
            .execute("SELECT count(*) FROM records WHERE system=? AND kind=?", (system, kind))
            .fetchone()[0]
        )

    def next_number(self, name: str) -> int:
        db = self._db()
        db.execute(
            "INSERT INTO sequences (name, value) VALUES (?, 1) "
            "ON CONFLICT (name) DO UPDATE SET value = value + 1",
            (name,),
        )
        return db.execute("SELECT value FROM sequences WHERE name=?", (name,)).fetchone()[0]

    def answered(self, system: str, key: str) -> tuple[str, int, str] | None:
        """(fingerprint, status, body) of the first request under this key, if any."""
        return (
            self._db()
            .execute(
                "SELECT fingerprint, status, body FROM idempotency WHERE system=? AND key=?",
                (system, key),
            )
            .fetchone()
        )

    def remember(self, system: str, key: str, fingerprint: str, status: int, body: str) -> None:
        self._db().execute(
            "INSERT OR IGNORE INTO idempotency (system, key, fingerprint, status, body, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (system, key, fingerprint, status, body, now()),
        )

    def transaction(self):
        return _Transaction(self)


class _Transaction:
    """The store's lock plus one SQLite transaction: a write and its remembered answer commit
    together, or neither does."""

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> Store:
        self.store.lock.acquire()
        self.store._db().execute("BEGIN IMMEDIATE")
        return self.store

    def __exit__(self, exc_type, exc, tb):
        try:
            self.store._db().execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.store.lock.release()
