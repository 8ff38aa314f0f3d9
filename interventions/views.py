"""Portal intervention buttons and the emergency stop page.

POST only for changes (CSRF-protected); a person without authority gets 403; a refusal
from the services is shown as a message on the page the button was on.
"""

from functools import wraps

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from agents.models import Agent, AgentStatus, BusinessUnit
from autonomy.errors import DomainError
from autonomy.models import ActionRequest, Intervention, InterventionKind
from interventions import services
from workflows.models import StepRun

AGENT_VERBS = {
    "pause": services.agent_pause,
    "resume": services.agent_resume,
    "quarantine": services.agent_quarantine,
    "kill": services.agent_kill,
}


def authority_required(view):
    """Signed-in people who may intervene; anyone else signed in gets 403."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not services.may_intervene(user=request.user):
            raise PermissionDenied("Only IT admins, risk officers and superusers may intervene.")
        return view(request, *args, **kwargs)

    return wrapped


def _back(request: HttpRequest) -> HttpResponse:
    target = request.POST.get("next") or request.META.get("HTTP_REFERER") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = "interventions:index"
    return redirect(target)


def _run(request: HttpRequest, done: str, call) -> HttpResponse:
    try:
        call()
    except DomainError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, done)
    return _back(request)


def _reason(request: HttpRequest) -> str:
    return (request.POST.get("reason") or "").strip()[:2000]


@authority_required
def index(request: HttpRequest) -> HttpResponse:
    """Open emergency stops with their lift buttons, a form to stop, recent interventions."""
    recent = Intervention.objects.select_related("agent", "business_unit", "by", "lifted_by")
    open_stops = recent.filter(kind=InterventionKind.EMERGENCY_STOP, lifted_at__isnull=True)
    return render(
        request,
        "portal/interventions.html",
        {
            "open_stops": open_stops,
            "recent": recent[:50],
            "units": BusinessUnit.objects.order_by("name"),
            "active_agents": Agent.objects.filter(status=AgentStatus.ACTIVE).count(),
        },
    )


@require_POST
@authority_required
def agent_intervene(request: HttpRequest, agent_id, verb: str) -> HttpResponse:
    service = AGENT_VERBS.get(verb)
    if service is None:
        raise PermissionDenied("Unknown intervention.")
    agent = get_object_or_404(Agent, pk=agent_id)
    return _run(
        request,
        f"{agent.name}: {verb} done.",
        lambda: service(agent=agent, by=request.user, reason=_reason(request)),
    )


@require_POST
@authority_required
def stop(request: HttpRequest) -> HttpResponse:
    slug = request.POST.get("business_unit") or ""
    unit = get_object_or_404(BusinessUnit, slug=slug) if slug else None
    return _run(
        request,
        f"Emergency stop of {unit or 'the whole fleet'} in force.",
        lambda: services.emergency_stop(
            by=request.user, reason=_reason(request), business_unit=unit
        ),
    )


@require_POST
@authority_required
def lift(request: HttpRequest, pk: int) -> HttpResponse:
    stop_row = get_object_or_404(Intervention, pk=pk, kind=InterventionKind.EMERGENCY_STOP)
    return _run(
        request,
        "Emergency stop lifted.",
        lambda: services.emergency_lift(
            intervention=stop_row, by=request.user, reason=_reason(request)
        ),
    )


@require_POST
@authority_required
def override(request: HttpRequest, action_id) -> HttpResponse:
    action = get_object_or_404(ActionRequest, pk=action_id)
    verdict = request.POST.get("verdict") or ""
    return _run(
        request,
        f"Action {verdict == 'allow' and 'allowed' or 'denied'} by override.",
        lambda: services.action_override(
            action=action, by=request.user, verdict=verdict, reason=_reason(request)
        ),
    )


@require_POST
@authority_required
def redirect_step(request: HttpRequest, step_run_id) -> HttpResponse:

    step_run = get_object_or_404(StepRun, pk=step_run_id)
    to_agent = get_object_or_404(Agent, slug=request.POST.get("to_agent") or "")
    return _run(
        request,
        f"Step redirected to {to_agent.name}.",
        lambda: services.step_redirect(
            step_run=step_run, to_agent=to_agent, by=request.user, reason=_reason(request)
        ),
    )
