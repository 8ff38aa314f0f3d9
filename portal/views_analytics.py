"""Portal pages of workflow and agent analytics: every workflow with its runs and the agents'
and roles' figures; one workflow's versions, step by step, with its bottleneck and two
versions side by side. Reads come from ``workflows.analytics`` (the rollups only)."""

from urllib.parse import urlencode

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from portal.charts import share_bars, stacked_bars
from portal.dashboard import Series
from workflows import analytics
from workflows.models import Phase
from workflows.views import reader_required

RUN_TONES = {"succeeded": "allow", "failed": "deny"}
RUN_LABELS = {"succeeded": "succeeded", "failed": "failed"}
# Chart buckets per window, and how their labels read.
BUCKETS = {"24h": (24, "%H:%M"), "7d": (28, "%a %H:%M"), "30d": (30, "%d %b")}


def _window(request: HttpRequest) -> str:
    name = request.GET.get("window", "")
    return name if name in analytics.WINDOWS else analytics.DEFAULT_WINDOW


@require_GET
@reader_required
def analytics_index(request: HttpRequest) -> HttpResponse:
    window = _window(request)
    since = analytics.window_start(window)
    context = {
        "window": window,
        "windows": list(analytics.WINDOWS),
        "templates": analytics.templates_overview(since=since),
        "agents": analytics.agent_figures(since=since),
        "roles": analytics.role_figures(since=since),
    }
    return render(request, "workflows/analytics.html", context)


def _version(versions: list, raw: str | None):
    if raw and raw.isdigit():
        return next((t for t in versions if t.version == int(raw)), None)
    return None


@require_GET
@reader_required
def analytics_template(request: HttpRequest, key: str) -> HttpResponse:
    versions = analytics.template_versions(key=key)
    if not versions:
        raise Http404("No such workflow.")
    window, now = _window(request), timezone.now()
    since = analytics.window_start(window, now=now)
    chosen = _version(versions, request.GET.get("v")) or versions[0]
    others = [t for t in versions if t.pk != chosen.pk]
    against = _version(others, request.GET.get("vs")) or next(
        (t for t in others if t.version < chosen.version), None
    )
    figures = analytics.version_figures(template=chosen, since=since)
    compared = analytics.version_figures(template=against, since=since) if against else None
    buckets, label_format = BUCKETS[window]
    series = Series(**analytics.runs_over_time(template=chosen, since=since, now=now,
                                               buckets=buckets))  # fmt: skip
    timed = [s for s in figures.steps if s.total_ms]
    context = {
        "window": window,
        "windows": list(analytics.WINDOWS),
        "key": key,
        "extra_query": urlencode(
            {"v": chosen.version} | ({"vs": against.version} if against else {})
        ),
        "versions": versions,
        "figures": figures,
        "compared": compared,
        "pairs": _pairs(figures, compared) if compared else [],
        "phases": Phase.choices,
        "runs_chart": stacked_bars(
            series, label_format=label_format, tones=RUN_TONES, labels=RUN_LABELS
        ),
        "time_chart": share_bars(
            [{"label": s.step.name, "shares": {p: sh for p, _, sh in s.shares}} for s in timed],
            parts=Phase.choices,
        ),
    }
    return render(request, "workflows/analytics_template.html", context)


def _pairs(figures, compared) -> list[tuple]:
    """Steps of two versions side by side, matched by step key, in the newer one's order."""
    theirs = {s.step.key: s for s in compared.steps}
    ours = {s.step.key for s in figures.steps}
    pairs = [(s.step.key, s, theirs.get(s.step.key)) for s in figures.steps]
    return pairs + [(s.step.key, None, s) for s in compared.steps if s.step.key not in ours]
