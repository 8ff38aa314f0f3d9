"""One action's trace page: why it was allowed or not, who approved it, what it did, when."""

import json
from datetime import timedelta

from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from autonomy import masking
from portal.trace import action_trace
from portal.views_activity import watcher_required


def duration_text(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{round(seconds * 1000)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def _pretty(value) -> str:
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


@watcher_required
@require_GET
def action_trace_page(request: HttpRequest, action_id) -> HttpResponse:
    trace = action_trace(action_id=action_id)
    if trace is None:
        raise Http404("No such action.")
    action = trace.action
    return render(
        request,
        "portal/trace.html",
        {
            "trace": trace,
            "action": action,
            "timings": [(label, duration_text(delta)) for label, delta in trace.timings],
            "params_json": _pretty(masking.params_for(action, viewer=request.user)),
            "outcome_json": (
                _pretty(masking.outcome_for(action, viewer=request.user))
                if action.outcome is not None
                else ""
            ),
            "error_json": _pretty(action.error) if action.error is not None else "",
            "receipt_json": (
                _pretty(
                    masking.mask(
                        action.operation,
                        trace.receipt.result,
                        viewer=request.user,
                        result=True,
                        action=action,
                    )
                )
                if trace.receipt
                else ""
            ),
        },
    )
