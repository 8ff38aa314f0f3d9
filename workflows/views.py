"""Portal pages of runs: the list, one run's timeline, and people's controls.

Reads come from ``workflows.selectors``, controls go through ``workflows.services``; these
views only check who may, parse the form and word the outcome. Both pages poll a partial
(``static/portal/runs.js``) that answers 304 while nothing changed.
"""

import json
from functools import wraps
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import etag, require_GET, require_POST

from autonomy.errors import DomainError
from workflows import selectors, services
from workflows.models import Run, RunStatus, StepRun

PAGE_SIZE = 50
REASON_MAX = 300

# control -> (service, what the button says, what happened)
RUN_CONTROLS = {
    "pause": (services.run_pause, "Pause", "Paused the run; no new step starts until resumed."),
    "resume": (services.run_resume, "Resume", "Resumed the run."),
    "cancel": (services.run_cancel, "Cancel", "Cancelled the run; open steps are stopped."),
}
STEP_CONTROLS = {
    "retry": (services.step_retry, "Retry", "sent round again with fresh retries."),
    "skip": (services.step_skip, "Skip", "skipped; the run goes on without it."),
    "fail": (services.step_fail, "Fail", "failed; the run stops and undoes what it did."),
}


def reader_required(view):
    """Signed-in staff people only: others go to sign-in, agents and non-staff get 403."""

    @wraps(view)
    @login_required
    def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not selectors.may_read_runs(user=request.user):
            raise PermissionDenied("Runs are for portal staff.")
        return view(request, *args, **kwargs)

    return wrapped


def _no_store(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = "private, no-cache"
    return response


# --- the list -------------------------------------------------------------------------------


def _filters(request: HttpRequest) -> dict[str, str]:
    status = request.GET.get("status", "")
    return {
        "status": status if status in RunStatus.values else "",
        "template": request.GET.get("template", "")[:80],
    }


def _list_page(request: HttpRequest) -> Page:
    if not hasattr(request, "_runs_page"):
        filters = _filters(request)
        runs = selectors.run_list(
            user=request.user,
            status=filters["status"] or None,
            template_key=filters["template"] or None,
        )
        request._runs_page = Paginator(runs, PAGE_SIZE).get_page(request.GET.get("page"))
    return request._runs_page


def _list_version(request: HttpRequest, *args, **kwargs) -> str:
    page = _list_page(request)
    return selectors.run_list_version(runs=page.object_list) + f"-{page.paginator.count}"


def _list_context(request: HttpRequest) -> dict:
    page = _list_page(request)
    filters = _filters(request)
    query = urlencode({k: v for k, v in filters.items() if v})
    return {
        "page_obj": page,
        "runs": page.object_list,
        "filters": filters,
        "filter_query": query,
        "statuses": RunStatus.choices,
        "templates": selectors.run_template_choices(),
        "list_version": _list_version(request),
    }


@reader_required
@require_GET
def run_list(request: HttpRequest) -> HttpResponse:
    return render(request, "workflows/run_list.html", _list_context(request))


@reader_required
@require_GET
@etag(_list_version)
def run_list_live(request: HttpRequest) -> HttpResponse:
    """The table alone, for the page's poller; 304 while nothing changed."""
    return _no_store(render(request, "workflows/_run_table.html", _list_context(request)))


# --- one run --------------------------------------------------------------------------------


def _timeline_context(request: HttpRequest, run_id) -> dict:
    timeline = selectors.run_timeline(run_id=run_id, viewer=request.user)
    if timeline is None:
        raise Http404("No such run.")
    may_control = selectors.may_control_runs(user=request.user)
    return {
        "timeline": timeline,
        "run": timeline.run,
        "may_control": may_control,
        "run_controls": [
            (name, RUN_CONTROLS[name][1]) for name in timeline.controls if may_control
        ],
        "step_control_labels": {name: spec[1] for name, spec in STEP_CONTROLS.items()},
        "redirectable": [str(status) for status in services.REDIRECTABLE]
        if timeline.run.status in (RunStatus.RUNNING, RunStatus.PAUSED)
        else [],
        "context_json": json.dumps(
            timeline.context, indent=2, sort_keys=True, ensure_ascii=False, default=str
        ),
    }


def _run_version(request: HttpRequest, run_id) -> str | None:
    return selectors.run_version(run_id=run_id)


@reader_required
@require_GET
def run_detail(request: HttpRequest, run_id) -> HttpResponse:
    return render(request, "workflows/run_detail.html", _timeline_context(request, run_id))


@reader_required
@require_GET
@etag(_run_version)
def run_live(request: HttpRequest, run_id) -> HttpResponse:
    """The timeline alone, for the page's poller; 304 while the run has not moved."""
    return _no_store(
        render(request, "workflows/_timeline.html", _timeline_context(request, run_id))
    )


# --- controls -------------------------------------------------------------------------------


def _controller(request: HttpRequest) -> str:
    """Refuse anyone who may not control runs; return the reason they gave."""
    if not selectors.may_control_runs(user=request.user):
        raise PermissionDenied("Only IT admins and risk officers control runs.")
    return " ".join(request.POST.get("reason", "").split())[:REASON_MAX]


@reader_required
@require_POST
def run_control(request: HttpRequest, run_id, control: str) -> HttpResponse:
    if control not in RUN_CONTROLS:
        raise Http404("No such control.")
    reason = _controller(request)
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        raise Http404("No such run.")
    service, label, done = RUN_CONTROLS[control]
    if control == "cancel" and not reason:
        messages.error(request, "Cancel refused: say why the run is cancelled.")
        return redirect("workflows:run-detail", run_id=run.pk)
    try:
        service(run=run, by=request.user, reason=reason)
    except DomainError as exc:
        messages.error(request, f"{label} refused: {exc.message} Nothing was changed.")
    else:
        messages.success(request, done)
    return redirect("workflows:run-detail", run_id=run.pk)


@reader_required
@require_POST
def step_control(request: HttpRequest, run_id, step_run_id, control: str) -> HttpResponse:
    if control not in STEP_CONTROLS:
        raise Http404("No such control.")
    reason = _controller(request)
    step_run = StepRun.objects.select_related("step").filter(pk=step_run_id, run_id=run_id).first()
    if step_run is None:
        raise Http404("No such step in this run.")
    service, label, done = STEP_CONTROLS[control]
    try:
        service(step_run=step_run, by=request.user, reason=reason)
    except DomainError as exc:
        messages.error(
            request, f"{label} {step_run.step.name} refused: {exc.message} Nothing was changed."
        )
    else:
        messages.success(request, f"{step_run.step.name} {done}")
    return redirect("workflows:run-detail", run_id=run_id)
