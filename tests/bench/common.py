"""What every bench module prints and writes the same way: one ``name: value`` line per
figure, the figures kept for ``--json``, percentiles, and the end of a run."""

import json
import sys
from pathlib import Path


class Figures(dict):
    """The figures of one bench run, in the order emitted."""

    def emit(self, name: str, value) -> None:
        self[name] = value
        print(f"{name}: {value}", flush=True)

    def finish(self, *, json_path: str | None, required) -> int:
        """Write the figures to ``json_path`` (if given); 1 when a required one is missing."""
        if json_path:
            Path(json_path).write_text(json.dumps(self, indent=2, sort_keys=True) + "\n")
        missing = [name for name in required if name not in self]
        if missing:
            print(f"# missing figures: {missing}", file=sys.stderr)
            return 1
        return 0


def pct(values, q: float):
    """The ``q`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def setup_django(data_dir: str, *, env: dict | None = None, quiet: str | None = None) -> None:
    """Django on a throwaway SQLite file in ``data_dir``, migrated. ``env``: variables to set
    first (a value of None removes the variable); ``quiet``: a logger to raise to ERROR (the
    module's expected 4xx responses are the point, not noise)."""
    import logging
    import os

    os.environ["AUTONOMY_DATA_DIR"] = data_dir
    os.environ.pop("DATABASE_URL", None)  # a throwaway SQLite file of its own
    for name, value in (env or {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    if quiet:
        logging.getLogger(quiet).setLevel(logging.ERROR)
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def alternate(series: int, measure) -> tuple[list[float], list[float]]:
    """``measure(on)`` in alternating series, off first, so a burst of load elsewhere on the
    machine lands on both sides. Returns (on, off) timings."""
    on, off = [], []
    for _ in range(series):
        off += measure(False)
        on += measure(True)
    return on, off


def emit_overhead(figures: Figures, *, prefix: str, ratio: str, on, off, what: str) -> None:
    """The two p99s (``<prefix>_p99_ms``, ``<prefix>_baseline_p99_ms``) and their ratio."""
    import statistics

    figures.emit(f"{prefix}_p99_ms", round(pct(on, 0.99), 3))
    figures.emit(f"{prefix}_baseline_p99_ms", round(pct(off, 0.99), 3))
    figures.emit(ratio, round(pct(on, 0.99) / pct(off, 0.99), 3))
    print(
        f"# {prefix}: p50 {statistics.median(on):.3f} ms {what}, "
        f"{statistics.median(off):.3f} ms without",
        file=sys.stderr,
    )


def run_in_temp(*, name: str, figures: Figures, required, json_path: str | None, bench) -> int:
    """Run ``bench()`` in a throwaway data directory set up by ``setup_django``'s caller
    (``bench`` receives the directory), then write and check the figures."""
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix=f"autonomy-{name}-bench-")
    try:
        bench(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return figures.finish(json_path=json_path, required=required)


def timed_ms(rounds: int, call) -> list[float]:
    """``call()`` ``rounds`` times, each one's wall time in ms."""
    import time

    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return times
