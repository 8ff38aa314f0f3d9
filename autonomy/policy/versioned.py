"""One value per policy-store version, per process: the one rule of the kernel's caches that
are keyed by that version (compiled policies, the autonomy level index, content rules).

The value is built on first use for a version, shared by every decision that read that
version, and replaced whole when the version moves; every change it depends on moves the
version in its own transaction (``autonomy.policy.receivers``). Version 0 (no store row: a
flushed test database) never moves, so a value built for it is never trusted.
"""

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerVersion(Generic[T]):
    def __init__(self, build: Callable[[int], T]):
        self._build = build
        self._lock = threading.Lock()
        self._current: tuple[int, T] | None = None

    def get(self, version: int | None) -> T:
        """The value for ``version`` (the one this decision read)."""
        version = version or 0
        current = self._current
        if current is not None and current[0] == version and version:
            return current[1]
        with self._lock:
            current = self._current
            if current is None or current[0] != version or not version:
                current = (version, self._build(version))
                self._current = current
            return current[1]

    def version(self) -> int | None:
        """The version of the value held now (never 0), or None."""
        current = self._current
        return current[0] if current is not None and current[0] else None

    def forget(self) -> None:
        """Drop the value: only a database whose versions start again (a test database)
        needs it; in production the version never repeats."""
        with self._lock:
            self._current = None
