"""The rollout plans' pages: every plan (``/rollouts/``) and one plan's waves, live criteria,
charts over time, history and its promote and demote buttons (``/rollouts/<slug>/``).

Reads come from ``autonomy.rollouts.selectors``; the buttons call
``autonomy.rollouts.services``, whose ``may_steer`` is the one rule of who steers a plan.
The live figures are re-read every 10 s through ``/rollouts/<slug>/live/``
(``static/portal/live.js``).
"""

from datetime import timedelta
from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from agents.portal_roles import is_portal_person
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import RolloutPlan
from autonomy.rollouts import selectors, services
from portal import charts

REFRESH_MS = 10_000
CHART_HOURS = 24
REASON_MAX = 2000
# The figures charted over time: (name in the figures, title, a ratio drawn in percent).
CHARTED = (
    ("actions", "Actions taken", False),
    ("denial_ratio", "Denial ratio", True),
    ("failure_ratio", "Failure ratio", True),
    ("override_ratio", "Human override ratio", True),
    ("open_drift_flags", "Open drift flags", False),
)


def may_read(*, user) -> bool:
    """People of the portal who may view rollout plans; agents never."""
    return is_portal_person(user) and services.may_view(user=user)


def reader_required(view):
    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not may_read(user=request.user):
            raise PermissionDenied("Rollout plans are for portal people who may view them.")
        return view(request, *args, **kwargs)

    return wrapped


def _plan(slug: str) -> RolloutPlan:
    plan = selectors.plan_by_slug(slug=slug)
    if plan is None:
        raise Http404("No such rollout plan.")
    return plan


def _waiting(plan: RolloutPlan) -> dict:
    """The promotion waiting for an approval, and that approval once the approvals app opens
    one (``promotion.approval``; absent until it does)."""
    promotion = plan.pending_promotions[0] if plan.pending_promotions else None
    return {"promotion": promotion, "approval": getattr(promotion, "approval", None)}


RATIOS = {"denial_ratio", "failure_ratio", "override_ratio"}


def _shown(name: str, value) -> str:
    if value is None:
        return "—"
    return f"{value * 100:.1f} %" if name in RATIOS else f"{value:g}"


def _summary(figures: dict) -> str:
    """One line of an event's figures: the measured record, or the guard that tripped."""
    measured = figures.get("figures")
    if measured:
        return ", ".join(
            f"{label} {_shown(name, measured.get(name))}"
            for name, label in (
                ("actions", "actions"),
                ("denial_ratio", "denied"),
                ("failure_ratio", "failed"),
                ("override_ratio", "overridden"),
                ("open_drift_flags", "open flags"),
            )
        )
    if figures.get("guard") == "failures":
        return f"{figures.get('failures')} failures in {figures.get('window_minutes')} min"
    if figures.get("guard") == "drift_flag":
        return f"drift flag on {figures.get('agent')}"
    return ""


def _wave_terms(wave) -> dict:
    """A wave's entry criteria and guards, as short phrases."""
    entry = [f"≥ {wave.min_actions} actions"] if wave.min_actions else []
    for name, label, threshold in (
        ("denial_ratio", "denied", wave.max_denial_ratio),
        ("failure_ratio", "failed", wave.max_failure_ratio),
        ("override_ratio", "overridden", wave.max_override_ratio),
        ("open_drift_flags", "open flags", wave.max_open_drift_flags),
    ):
        if threshold is not None:
            entry.append(f"{label} ≤ {_shown(name, threshold)}")
    guards = []
    if wave.guard_failures:
        guards.append(f"{wave.guard_failures} failures in {wave.guard_window_minutes} min")
    if wave.guard_drift_flag:
        guards.append("any drift flag")
    return {"entry": entry, "guards": guards}


def _live(plan: RolloutPlan) -> dict:
    health = selectors.plan_health(plan=plan)
    for criterion in health["criteria"]:
        criterion["shown"] = _shown(criterion["name"], criterion["value"])
        criterion["shown_threshold"] = _shown(criterion["name"], criterion["threshold"])
    figures = health["figures"]
    shown = {name: _shown(name, figures.get(name)) for name, _, _ in CHARTED}
    return {"plan": plan, "health": health, "figures": figures, "shown": shown, **_waiting(plan)}


def _charts(plan: RolloutPlan, health: dict, *, now) -> list[dict]:
    """One line per charted figure over the last day, against the next wave's threshold."""
    rows = selectors.plan_measurements(plan=plan, since=now - timedelta(hours=CHART_HOURS))
    thresholds = {c["name"]: c["threshold"] for c in health["criteria"]}
    found = []
    for name, title, percent in CHARTED:
        points = [(at, (figures.get("figures") or {}).get(name)) for at, _, _, figures in rows]
        found.append(
            {
                "name": name,
                "title": title,
                "chart": charts.line_chart(points, threshold=thresholds.get(name), percent=percent),
            }
        )
    return found


@reader_required
@require_GET
@never_cache
def plan_list(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "portal/rollouts/list.html",
        {"plans": list(selectors.plan_list()), "may_steer": services.may_steer(user=request.user)},
    )


@reader_required
@require_GET
@never_cache
def plan_page(request: HttpRequest, plan: str) -> HttpResponse:
    plan = _plan(plan)
    live = _live(plan)
    return render(
        request,
        "portal/rollouts/plan.html",
        {
            **live,
            "reach": [(r, _wave_terms(r.wave)) for r in selectors.wave_reach(plan=plan)],
            "events": [(e, _summary(e.figures)) for e in selectors.plan_events(plan=plan)],
            "charts": _charts(plan, live["health"], now=timezone.now()),
            "chart_hours": CHART_HOURS,
            "may_steer": services.may_steer(user=request.user),
            "refresh_ms": REFRESH_MS,
        },
    )


@reader_required
@require_GET
@never_cache
def plan_live(request: HttpRequest, plan: str) -> HttpResponse:
    plan = _plan(plan)
    return render(
        request,
        "portal/rollouts/_live.html",
        {**_live(plan), "may_steer": services.may_steer(user=request.user)},
    )


def _steerer_required(view):
    @wraps(view)
    @reader_required
    @require_POST
    def wrapped(request: HttpRequest, plan: str) -> HttpResponse:
        if not services.may_steer(user=request.user):
            raise PermissionDenied("Only people allowed to steer rollouts may do this.")
        return view(request, get_object_or_404(RolloutPlan, slug=plan))

    return wrapped


def _not_met(exc: DomainError) -> str:
    unmet = [
        f"{c['label']} {'—' if c['value'] is None else c['value']} "
        f"(needs {'at least' if c['at_least'] else 'at most'} {c['threshold']})"
        for c in exc.details.get("criteria", [])
        if not c["met"]
    ]
    return f"{exc.message} Not met: {'; '.join(unmet)}." if unmet else exc.message


@_steerer_required
def plan_propose(request: HttpRequest, plan: RolloutPlan) -> HttpResponse:
    try:
        promotion = services.promotion_propose(plan_id=plan.pk, by=request.user)
    except DomainError as exc:
        if exc.code == ErrorCode.ROLLOUT_CRITERIA_NOT_MET:
            messages.error(request, _not_met(exc))
        else:
            messages.error(request, exc.message)
    else:
        messages.success(
            request,
            f"Promotion to wave {promotion.to_wave} proposed: it waits for an approval.",
        )
    return redirect(plan)


@_steerer_required
def plan_demote(request: HttpRequest, plan: RolloutPlan) -> HttpResponse:
    try:
        seen = request.POST.get("from_wave", "")
        plan = services.plan_demote(
            plan_id=plan.pk,
            by=request.user,
            reason=request.POST.get("reason", "")[:REASON_MAX],
            from_wave=int(seen) if seen.isdigit() else None,
        )
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        where = f"wave {plan.current_wave}" if plan.current_wave else "no wave: every agent held"
        messages.success(request, f"Demoted to {where}.")
    return redirect(plan)
