"""Chart geometry for the dashboard, computed on the server and drawn as inline SVG.

No chart library and no script: a view turns a series into rectangles with coordinates and
the template (``portal/_chart_*.html``) writes them out, each with a ``<title>`` that a
screen reader or a hover reads.
"""

from dataclasses import dataclass

from portal.dashboard import Series

WIDTH, HEIGHT = 720, 180
PAD_LEFT, PAD_BOTTOM, PAD_TOP = 36, 22, 8
COLOURS = {"allow": "allow", "needs_approval": "approval", "deny": "deny"}
LABELS = {"allow": "allowed", "needs_approval": "needs approval", "deny": "denied"}


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    tone: str
    title: str


def _nice_max(value: int) -> int:
    """A round top for the axis at or above ``value``."""
    if value <= 5:
        return 5
    step = 10 ** (len(str(value)) - 1)
    for factor in (1, 2, 2.5, 5, 10):
        top = int(step * factor)
        if top >= value:
            return top
    return value


def stacked_bars(
    series: Series, *, label_format: str, tones: dict = COLOURS, labels: dict = LABELS
) -> dict:
    """Bars per bucket, stacked by verdict (or by the keys ``tones`` and ``labels`` name),
    scaled to the tallest bucket."""
    n = len(series.starts)
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / n
    gap = min(2.0, slot * 0.2)
    totals = [sum(values[i] for values in series.counts.values()) for i in range(n)]
    top = _nice_max(max(totals, default=0))
    bars: list[Bar] = []
    for i, start in enumerate(series.starts):
        base = HEIGHT - PAD_BOTTOM
        for verdict, values in series.counts.items():
            count = values[i]
            if not count:
                continue
            h = plot_h * count / top
            base -= h
            bars.append(
                Bar(
                    x=round(PAD_LEFT + i * slot + gap / 2, 2),
                    y=round(base, 2),
                    width=round(slot - gap, 2),
                    height=round(max(h, 0.5), 2),
                    tone=tones.get(verdict, "allow"),
                    title=f"{start:{label_format}}: {count} {labels.get(verdict, verdict)}",
                )
            )
    ticks = [
        {"x": round(PAD_LEFT + i * slot, 2), "label": f"{series.starts[i]:{label_format}}"}
        for i in range(0, n, max(1, n // 6))
    ]
    grid = [
        {"y": round(HEIGHT - PAD_BOTTOM - plot_h * f, 2), "label": f"{top * f:g}"}
        for f in (0, 0.5, 1)
    ]
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "bars": bars,
        "ticks": ticks,
        "grid": grid,
        "left": PAD_LEFT,
        "baseline": HEIGHT - PAD_BOTTOM,
        "total": sum(totals),
        "totals": {labels[k]: v for k, v in series.totals.items() if k in labels},
    }


def paired_bars(
    starts: list, left: dict[str, list[int]], right: dict[str, list[int]], *,
    tones: dict, labels: dict, label_format: str,
) -> dict:  # fmt: skip
    """Two stacked bars per bucket side by side, scaled together: e.g. the approval
    requests that arrived in an hour (``left``) against those that left the backlog in it,
    by outcome (``right``)."""
    n = len(starts)
    plot_w, plot_h = WIDTH - PAD_LEFT, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = plot_w / max(n, 1)
    gap = min(4.0, slot * 0.2)
    half = (slot - gap) / 2

    def stack_totals(side: dict) -> list[int]:
        return [sum(values[i] for values in side.values()) for i in range(n)]

    top = _nice_max(max([*stack_totals(left), *stack_totals(right)], default=0))
    bars: list[Bar] = []
    for i, start in enumerate(starts):
        for offset, side in ((0, left), (half, right)):
            base = HEIGHT - PAD_BOTTOM
            for key, values in side.items():
                if not values[i]:
                    continue
                h = plot_h * values[i] / top
                base -= h
                bars.append(
                    Bar(
                        x=round(PAD_LEFT + i * slot + gap / 2 + offset, 2),
                        y=round(base, 2),
                        width=round(max(half - 0.5, 0.5), 2),
                        height=round(max(h, 0.5), 2),
                        tone=tones[key],
                        title=f"{start:{label_format}}: {values[i]} {labels[key]}",
                    )
                )
    ticks = [
        {"x": round(PAD_LEFT + i * slot, 2), "label": f"{starts[i]:{label_format}}"}
        for i in range(0, n, max(1, n // 6))
    ]
    grid = [
        {"y": round(HEIGHT - PAD_BOTTOM - plot_h * f, 2), "label": f"{top * f:g}"}
        for f in (0, 0.5, 1)
    ]
    totals = {labels[k]: sum(v) for k, v in (left | right).items()}
    return {
        "width": WIDTH,
        "height": HEIGHT,
        "bars": bars,
        "ticks": ticks,
        "grid": grid,
        "left": PAD_LEFT,
        "baseline": HEIGHT - PAD_BOTTOM,
        "total": sum(sum(v) for v in left.values()),
        "totals": totals,
        "legend": [
            {"label": labels[k], "tone": tones[k], "value": totals[labels[k]]}
            for k in (*left, *right)
        ],  # fmt: skip
    }


def horizontal_bars(rows: list[dict], *, label: str, value: str, tone: str) -> dict:
    """One bar per row, longest first, for rankings (business units, risky agents)."""
    row_h, label_w, width = 26, 170, 460
    top = max((r[value] for r in rows), default=0) or 1
    bars = [
        {
            "y": i * row_h,
            "text_y": i * row_h + 17,
            "width": round(max((width - label_w - 60) * r[value] / top, 1), 2),
            "label": r[label],
            "value": r[value],
            "tone": tone,
        }
        for i, r in enumerate(rows)
    ]
    return {
        "width": width,
        "height": max(row_h * len(rows), row_h),
        "label_w": label_w,
        "bars": bars,
        "value_x": label_w + 8,
    }


LINE_WIDTH, LINE_HEIGHT, LINE_PAD_RIGHT = 460, 150, 8
LINE_POINTS = 120


def line_chart(
    points: list[tuple], *, threshold: float | None = None, percent: bool = False
) -> dict:
    """One figure over time (``(at, value)`` pairs, oldest first; a None value breaks the
    line), with the threshold it is held against as a dashed line. Ratios are drawn as
    percentages (``percent``). At most ``LINE_POINTS`` points: a longer series is thinned
    evenly, keeping its last point."""
    if len(points) > LINE_POINTS:
        step = len(points) / LINE_POINTS
        points = [points[int(i * step)] for i in range(LINE_POINTS - 1)] + [points[-1]]
    scale = 100 if percent else 1
    values = [v * scale for _, v in points if v is not None]
    limit = threshold * scale if threshold is not None else None
    top = _nice_max(int(-(-max([*values, limit or 0, 0]) // 1)))
    plot_w = LINE_WIDTH - PAD_LEFT - LINE_PAD_RIGHT
    plot_h = LINE_HEIGHT - PAD_BOTTOM - PAD_TOP
    first, last = (points[0][0], points[-1][0]) if points else (None, None)
    span = (last - first).total_seconds() if points else 0

    def x(at) -> float:
        return round(PAD_LEFT + (plot_w * (at - first).total_seconds() / span if span else 0), 2)

    def y(value: float) -> float:
        return round(LINE_HEIGHT - PAD_BOTTOM - plot_h * value / top, 2)

    unit = " %" if percent else ""
    segments, current, dots = [], [], []
    for at, value in points:
        if value is None:
            if current:
                segments.append(" ".join(current))
            current = []
            continue
        shown = value * scale
        current.append(f"{x(at)},{y(shown)}")
        dots.append({"x": x(at), "y": y(shown), "title": f"{at:%H:%M} UTC: {shown:g}{unit}"})
    if current:
        segments.append(" ".join(current))
    ticks = []
    if points:
        ticks = [{"x": PAD_LEFT, "label": f"{first:%H:%M}", "anchor": "start"}]
        if span:
            ticks.append({"x": PAD_LEFT + plot_w, "label": f"{last:%H:%M}", "anchor": "end"})
    return {
        "width": LINE_WIDTH,
        "height": LINE_HEIGHT,
        "left": PAD_LEFT,
        "right": PAD_LEFT + plot_w,
        "segments": segments,
        "dots": dots if len(dots) <= 40 else [],
        "last": dots[-1] if dots else None,
        "threshold_y": y(limit) if limit is not None else None,
        "threshold": f"{limit:g}{unit}" if limit is not None else None,
        "grid": [{"y": y(top * f), "label": f"{top * f:g}"} for f in (0, 0.5, 1)],
        "ticks": ticks,
        "samples": len(values),
    }


def share_bars(rows: list[dict], *, parts: list[tuple[str, str]]) -> dict:
    """One horizontal bar per row split into its parts' shares (each row's ``shares``: part
    -> fraction), e.g. where a step's time goes. ``parts``: (key, label) in drawing order."""
    row_h, label_w, width = 26, 170, 720
    plot_w = width - label_w - 8
    bars = []
    for i, row in enumerate(rows):
        x, segments = float(label_w), []
        for key, label in parts:
            share = row["shares"].get(key, 0)
            if share <= 0:
                continue
            w = plot_w * share
            segments.append({"x": round(x, 2), "width": round(max(w, 0.5), 2), "tone": key,
                             "title": f"{row['label']}: {share:.0%} {label}"})  # fmt: skip
            x += w
        bars.append({"y": i * row_h, "text_y": i * row_h + 17, "label": row["label"],
                     "segments": segments})  # fmt: skip
    return {"width": width, "height": max(row_h * len(rows), row_h), "bars": bars}
