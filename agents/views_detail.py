"""The agent detail page: who the agent is, what it may do, what it did, and its drift flags.

Reads come from ``agents.selectors.agent_detail``, reviews go through
``agents.behaviour.flag_review``; the risk sparkline is drawn on the server as inline SVG.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from agents import behaviour, selectors
from agents.models import Agent, DriftFlag
from autonomy.errors import DomainError

SPARK_WIDTH, SPARK_HEIGHT, SPARK_PAD = 880, 120, 8
NOTE_MAX = 2000


def person_required(view):
    """Signed-in people only: anonymous visitors go to sign-in, agents' service users get 403."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if hasattr(request.user, "agent"):
            raise PermissionDenied("Agents have no portal pages.")
        return view(request, *args, **kwargs)

    return wrapped


def may_review(user) -> bool:
    """Risk officers, IT admins and superusers: the global authority over agents."""
    return selectors.has_global_authority(user)


def sparkline(points: list[dict], *, hours: int, now) -> dict:
    """Coordinates of the hourly average (line) and peak (dots) risk, oldest hour on the left."""
    start = now.replace(minute=0, second=0, microsecond=0)
    inner_w, inner_h = SPARK_WIDTH - 2 * SPARK_PAD, SPARK_HEIGHT - 2 * SPARK_PAD

    def x(hour) -> float:
        slot = hours - 1 - int((start - hour).total_seconds() // 3600)
        return round(SPARK_PAD + inner_w * slot / max(1, hours - 1), 1)

    def y(value) -> float:
        return round(SPARK_PAD + inner_h * (1 - min(100, value or 0) / 100), 1)

    dots = [
        {"x": x(p["hour"]), "y": y(p["avg"]), "peak_y": y(p["top"]), "avg": round(p["avg"] or 0),
         "top": p["top"], "n": p["n"], "hour": p["hour"]}
        for p in points
    ]  # fmt: skip
    return {
        "width": SPARK_WIDTH,
        "height": SPARK_HEIGHT,
        "line": " ".join(f"{d['x']},{d['y']}" for d in dots),
        "dots": dots,
        "hours": hours,
        "peak": max((p["top"] for p in points), default=None),
    }


def _shown(value) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "none"
    return "—" if value is None else str(value)


@person_required
@require_GET
def agent_detail(request: HttpRequest, slug: str) -> HttpResponse:
    detail = selectors.agent_detail(slug=slug)
    if detail is None:
        raise Http404("No such agent.")
    user = request.user
    if not (user.has_perm("agents.view_agent") or user.has_perm("agents.view_agent", detail.agent)):
        raise PermissionDenied("You may not see this agent.")
    now = timezone.now()
    spark = sparkline(detail.risk_by_hour, hours=selectors.RISK_HOURS, now=now)
    unit = detail.agent.business_unit
    spark["threshold_y"] = round(
        SPARK_PAD + (SPARK_HEIGHT - 2 * SPARK_PAD) * (1 - unit.approval_threshold / 100), 1
    )
    for flag in detail.flags:
        flag.evidence_rows = [(k.replace("_", " "), _shown(v)) for k, v in flag.evidence.items()]
    open_flags = [f for f in detail.flags if f.status == "open"]
    return render(
        request,
        "portal/agent_detail.html",
        {
            "detail": detail,
            "agent": detail.agent,
            "open_flags": open_flags,
            "other_flags": [f for f in detail.flags if f.status != "open"],
            "drift_points": min(20, sum(f.score for f in open_flags)),
            "spark": spark,
            "may_review": may_review(user),
            "now": now,
        },
    )


@person_required
@require_POST
def flag_review(request: HttpRequest, slug: str, flag_id: int) -> HttpResponse:
    if not may_review(request.user):
        raise PermissionDenied("Only risk officers and IT admins review drift flags.")
    agent = get_object_or_404(Agent, slug=slug)
    flag = get_object_or_404(DriftFlag, pk=flag_id, agent=agent)
    verdict = request.POST.get("verdict", "")
    try:
        behaviour.flag_review(
            flag=flag,
            by=request.user,
            verdict=verdict,
            note=request.POST.get("note", "")[:NOTE_MAX],
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        word = "Confirmed" if verdict == "confirm" else "Dismissed; the baseline now accepts it"
        messages.success(request, f"{word}: {flag}.")
    return redirect("agents:detail", slug=agent.slug)
