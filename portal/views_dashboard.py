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

from approvals import load as load_figures
from portal import charts
from portal.dashboard import dashboard as dashboard_data
from portal.dashboard import may_view_dashboard

REFRESH_MS = 30_000
LOAD_TONES = {"arrived": "arrived", "approved": "allow", "rejected": "deny",
              "expired": "approval", "cancelled": "cancelled"}  # fmt: skip
LOAD_LABELS = {"arrived": "arrived", "approved": "approved", "rejected": "rejected",
               "expired": "expired undecided", "cancelled": "cancelled"}  # fmt: skip


def portal_staff_required(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not may_view_dashboard(user=request.user):
            raise PermissionDenied("The dashboard is for portal staff.")
        return view(request, *args, **kwargs)

    return wrapped


def _filters(request: HttpRequest) -> dict:
    """The approval load's scope from the query string: ``unit`` (a business unit's slug)
    and ``group`` (an approver group's id); anything else is ignored."""
    group = request.GET.get("group", "")
    return {
        "business_unit": request.GET.get("unit", "")[:100] or None,
        "approver_group": int(group) if group.isdigit() else None,
    }


def _context(request: HttpRequest) -> dict:
    filters = _filters(request)
    data = dashboard_data(**filters)
    load = data.approvals
    return {
        "data": data,
        "load": load,
        "load_filters": filters,
        "load_scope": _scope_label(load, filters),
        "forecast": load_figures.forecast_sentence(load),
        "forecast_method": load_figures.FORECAST_METHOD,
        "median_decision": load_figures.wait_words(load.median_seconds),
        "p90_decision": load_figures.wait_words(load.p90_seconds),
        "approvers": [
            {**a, "median": load_figures.wait_words(a["median_seconds"])} for a in load.approvers
        ],
        "load_chart": charts.paired_bars(
            load.hours,
            {"arrived": load.arrivals},
            load.closed,
            tones=LOAD_TONES,
            labels=LOAD_LABELS,
            label_format="%H:%M",
        ),
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


def _scope_label(load, filters: dict) -> str:
    """What a filtered load panel counts, named from its rows ("" unfiltered)."""
    if not any(filters.values()):
        return ""
    if not load.groups:
        return "no requests"
    first = load.groups[0]
    names = []
    if filters["business_unit"]:
        names.append(first["unit"])
    if filters["approver_group"]:
        names.append(first["group"])
    return ", ".join(names)


@require_GET
@portal_staff_required
@never_cache
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/dashboard.html", _context(request))


@require_GET
@portal_staff_required
@never_cache
def dashboard_live(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/_dashboard_body.html", _context(request))
