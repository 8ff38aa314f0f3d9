"""The fleet dashboard: activity over time, approvals, risky agents, flags, usage.

Numbers come from ``portal.dashboard`` (a constant number of queries over
pre-aggregated rows); chart geometry from ``charts``; the page re-reads its body every 30 s
through ``dashboard/live/`` (``static/portal/live.js``).
"""

from functools import wraps

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portal import charts
from portal.dashboard import dashboard as dashboard_data
from portal.dashboard import may_view_dashboard

REFRESH_MS = 30_000


def portal_staff_required(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not may_view_dashboard(user=request.user):
            raise PermissionDenied("The dashboard is for portal staff.")
        return view(request, *args, **kwargs)

    return wrapped


def _context() -> dict:
    data = dashboard_data()
    median = data.median_decision_seconds
    return {
        "data": data,
        "median_decision": _duration(median) if median is not None else "—",
        "hour_chart": charts.stacked_bars(data.last_hour, label_format="%H:%M"),
        "day_chart": charts.stacked_bars(data.last_day, label_format="%H:%M"),
        "unit_chart": charts.horizontal_bars(
            data.units[:8], label="name", value="total", tone="allow"
        ),
        "agent_chart": charts.horizontal_bars(
            [{**a, "label": a["agent__name"]} for a in data.risky_agents],
            label="label",
            value="risk",
            tone="deny",
        ),
        "refresh_ms": REFRESH_MS,
    }


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


@require_GET
@portal_staff_required
@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/dashboard.html", _context())


@require_GET
@portal_staff_required
@never_cache
def dashboard_live(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/_dashboard_body.html", _context())
