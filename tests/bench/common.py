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
