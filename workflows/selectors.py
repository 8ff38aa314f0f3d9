"""Reads of runs for people: the run list and one run's timeline.

Each returns data with its related rows already loaded, in a constant number of queries
whatever the number of steps, events, claims or messages, so no page goes N+1.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Count, Max, Q, QuerySet
from django.urls import reverse
from django.utils import timezone

from agents.portal_roles import is_portal_person
from autonomy import masking
from autonomy import selectors as kernel_selectors
from autonomy.models import Operation
from autonomy.policy import engine as policy_engine
from workflows.models import (
    RUN_FINISHED,
    STEP_DONE,
    Claim,
    Message,
    Run,
    RunEvent,
    Step,
    StepRun,
    StepStatus,
    Template,
    TemplateStatus,
)
from workflows.transitions import run_controls, step_controls

EVENTS_SHOWN = 500
# Portal roles whose holders may pause, resume and cancel runs and retry, skip or fail steps.
CONTROL_ROLES = ("it_admin", "risk_officer")

WAITING = (StepStatus.WAITING_APPROVAL, StepStatus.WAITING_AGENT, StepStatus.ESCALATED)

# How the timeline words and colours each kind of event; unknown kinds show as they are.
EVENT_LOOK: dict[str, tuple[str, str]] = {
    "run_started": ("Run started", "info"),
    "run_succeeded": ("Run succeeded", "good"),
    "run_failed": ("Run failed", "bad"),
    "compensating": ("Compensating", "bad"),
    "paused": ("Paused", "warn"),
    "resumed": ("Resumed", "info"),
    "cancelled": ("Cancelled", "bad"),
    "task_offered": ("Task offered", "wait"),
    "task_claimed": ("Task claimed", "info"),
    "task_lease_expired": ("Lease expired", "warn"),
    "lease_expired": ("Lease expired", "warn"),
    "worker_lost": ("Worker lost", "warn"),
    "handoff": ("Handed off", "info"),
    "action_requested": ("Action requested", "info"),
    "waiting_approval": ("Waiting for approval", "wait"),
    "step_succeeded": ("Step succeeded", "good"),
    "step_skipped": ("Step skipped", "muted"),
    "step_failed": ("Step failed", "bad"),
    "step_cancelled": ("Step cancelled", "bad"),
    "step_compensated": ("Compensated", "warn"),
    "compensation_failed": ("Compensation failed", "bad"),
    "retry_scheduled": ("Retry scheduled", "warn"),
    "escalation_asked": ("Agent asked to escalate", "warn"),
    "escalated": ("Escalated to an agent", "warn"),
    "escalated_to_person": ("Escalated to a person", "bad"),
    "step_retried": ("Step retried by a person", "info"),
    "compensating_after_cancel": ("Succeeded after cancel: undoing", "warn"),
    "effect_not_compensated": ("Succeeded after cancel: not undone", "bad"),
}


# --- the engine's reads ---------------------------------------------------------------------

_published: dict[tuple, dict[int, Step]] = {}
_published_lock = threading.Lock()
PUBLISHED_CACHED = 256  # template versions whose steps a process keeps


def template_steps(template: Template) -> dict[int, Step]:
    """A template version's steps by id, for reading only (``step_copy`` before handing one
    on). A published version never changes (``authoring.ensure_editable``), so its steps are
    read once per process: every step of a run used to read its template's steps again.
    Keyed by id and publication time, so a database that reuses an id (a test's, rolled back)
    never sees another version's steps. A draft's are read every time."""
    if template.status == TemplateStatus.DRAFT or template.published_at is None:
        return _steps_of(template)
    key = (template.pk, template.published_at)
    steps = _published.get(key)
    if steps is None:
        steps = _steps_of(template)
        with _published_lock:
            if len(_published) >= PUBLISHED_CACHED:
                _published.clear()
            _published[key] = steps
    return steps


def sole_successor(template: Template, step: Step) -> Step | None:
    """The step of ``template`` that depends on ``step`` alone, when no other step depends on
    ``step``; else None. A linear stretch of a run moves from one to the next by this, without
    reading every step run still open (``services.advance``). Kept per published version,
    as its steps are; a draft's are worked out every time."""
    if template.status == TemplateStatus.DRAFT or template.published_at is None:
        return _successors_of(_steps_of(template)).get(step.key)
    key = (template.pk, template.published_at)
    successors = _successors.get(key)
    if successors is None:
        successors = _successors_of(template_steps(template))
        with _published_lock:
            if len(_successors) >= PUBLISHED_CACHED:
                _successors.clear()
            _successors[key] = successors
    return successors.get(step.key)


def _successors_of(steps: dict[int, Step]) -> dict[str, Step]:
    dependents: dict[str, list[Step]] = {}
    for candidate in steps.values():
        for dep in set(candidate.depends_on or []):
            dependents.setdefault(dep, []).append(candidate)
    return {
        key: only[0]
        for key, only in dependents.items()
        if len(only) == 1 and set(only[0].depends_on) == {key}
    }


_successors: dict[tuple, dict[str, Step]] = {}


def _steps_of(template: Template) -> dict[int, Step]:
    return {step.pk: step for step in Step.objects.filter(template_id=template.pk)}


def step_copy(step: Step) -> Step:
    """A step of ``template_steps`` of the caller's own: related rows it loads later (an
    agent to escalate to, a role) are read fresh and never stay on the shared one."""
    return copy.copy(step)


# The operations (with their connectors) of steps, as a step's request through the gate last
# saw them, for one policy-store version: every change to an operation or a connector moves
# that version (``autonomy.policy.receivers``), and the gate confirms in each request's own
# transaction that the version the request guessed is still the store's.
_step_operations: tuple[int | None, dict] = (None, {})


def step_operation(operation_id: int):
    """A step's operation with its connector, for a request that guesses the version this
    process compiled last (``policy_engine.compiled_version``): kept from an earlier request
    on that version, or read now."""
    version, cache = _step_operations
    found = cache.get(operation_id) if version == policy_engine.compiled_version() else None
    if found is not None:
        return kernel_selectors.copy_operation(found)
    return Operation.objects.select_related("connector").get(pk=operation_id)


def step_operations_forget() -> None:
    """Drop the operations kept for steps. For a test database whose versions start again;
    in production the version never repeats, so the cache never needs it."""
    global _step_operations
    _step_operations = (None, {})


def step_operation_confirmed(*, operation, guess: int | None, action) -> None:
    """After a step's request: keep ``operation`` for the version ``guess`` when the gate
    confirmed that guess for it (it decided on this very operation, and compiled no other
    version meanwhile)."""
    global _step_operations
    if not guess or action.operation is not operation:
        return  # no guess to confirm, or resolved again on a version that moved
    if policy_engine.compiled_version() != guess:
        return
    version, cache = _step_operations
    if version != guess:
        cache = {}  # one version at a time
        _step_operations = (guess, cache)
    if operation.pk not in cache:  # else it is a copy of the one kept
        cache[operation.pk] = kernel_selectors.copy_operation(operation)


# --- who may do what ------------------------------------------------------------------------


def may_read_runs(*, user) -> bool:
    """Runs carry business data: people of the portal (every portal role) read them, as they
    read the activity and the dashboard (the one rule, ``is_portal_person``); staff with no
    portal role and agents do not."""
    return is_portal_person(user)


def may_control_runs(*, user) -> bool:
    """Superusers, and staff who are IT admins or risk officers."""
    from agents.portal_roles import group_name

    if not may_read_runs(user=user):
        return False
    if user.is_superuser:
        return True
    names = [group_name(role) for role in CONTROL_ROLES]
    return user.groups.filter(name__in=names).exists()


# --- the list -------------------------------------------------------------------------------


def run_list(*, user, status: str | None = None, template_key: str | None = None) -> QuerySet:
    """Runs this person may read, newest first, with step progress counted in the same query."""
    if not may_read_runs(user=user):
        return Run.objects.none()
    runs = Run.objects.select_related("template").annotate(
        steps_total=Count("step_runs"),
        steps_done=Count("step_runs", filter=Q(step_runs__status__in=STEP_DONE)),
        steps_waiting=Count("step_runs", filter=Q(step_runs__status__in=WAITING)),
        steps_escalated=Count("step_runs", filter=Q(step_runs__status=StepStatus.ESCALATED)),
        steps_failed=Count("step_runs", filter=Q(step_runs__status=StepStatus.FAILED)),
    )
    if status:
        runs = runs.filter(status=status)
    if template_key:
        runs = runs.filter(template__key=template_key)
    return runs.order_by("-created_at", "-pk")


def run_template_choices() -> list[tuple[str, str]]:
    """(key, name) of every workflow that has runs, for the list's filter."""
    rows = (
        Template.objects.filter(runs__isnull=False)
        .values_list("key", "name")
        .order_by("key", "-version")
        .distinct()
    )
    seen: dict[str, str] = {}
    for key, name in rows:
        seen.setdefault(key, name)
    return list(seen.items())


def run_list_version(*, runs) -> str:
    """A cheap token of what a page of the list shows, for the poller's ``If-None-Match``."""
    rows = [(str(r.pk), r.status, r.steps_done, r.steps_waiting, r.steps_failed) for r in runs]
    return hashlib.sha256(repr(rows).encode()).hexdigest()[:32]


# --- one run --------------------------------------------------------------------------------


def as_text(value: Any) -> str:
    """A context value as a person reads it: strings as they are, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


def duration_text(value: timedelta | None) -> str:
    """``4 s``, ``3 min 20 s``, ``2 h 5 min``, ``3 d 4 h``; empty for no duration."""
    if value is None:
        return ""
    seconds = int(value.total_seconds())
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s" if seconds else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclass
class DiffRow:
    key: str
    before: Any
    after: Any
    change: str  # added | changed | removed

    @property
    def before_text(self) -> str:
        return as_text(self.before)

    @property
    def after_text(self) -> str:
        return as_text(self.after)


@dataclass
class StepView:
    step_run: StepRun
    depends_on: list[str]
    assignee: str
    assignee_kind: str  # agent | role | ""
    action_url: str = ""
    approval: Any = None
    approval_url: str = ""
    ready_at: datetime | None = None
    waited: timedelta | None = None
    ran: timedelta | None = None
    approval_waited: timedelta | None = None
    error_text: str = ""
    controls: list[str] = field(default_factory=list)

    @property
    def step(self):
        return self.step_run.step

    @property
    def waited_text(self) -> str:
        return duration_text(self.waited)

    @property
    def ran_text(self) -> str:
        return duration_text(self.ran)

    @property
    def approval_waited_text(self) -> str:
        return duration_text(self.approval_waited)

    @property
    def action(self):
        return self.step_run.action


@dataclass
class EventView:
    event: RunEvent
    label: str
    tone: str
    step_key: str
    diff_key: str = ""
    diff: list[DiffRow] = field(default_factory=list)
    action_url: str = ""
    trace_url: str = ""
    reasons: list[dict] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunTimeline:
    run: Run
    steps: list[StepView]
    events: list[EventView]
    events_total: int
    claims: list[Claim]
    messages: list[Message]
    controls: list[str]
    version: str
    # The run's shared context as the viewer may see it: a step's output under its key
    # masked by its operation's declared sensitive results (``autonomy.masking``).
    context: dict = field(default_factory=dict)

    @property
    def active(self) -> bool:
        return self.run.status not in RUN_FINISHED

    @property
    def duration_text(self) -> str:
        end = self.run.finished_at or timezone.now()
        return duration_text(max(end - self.run.created_at, timedelta(0)))

    @property
    def events_hidden(self) -> int:
        return max(self.events_total - len(self.events), 0)

    @property
    def progress(self) -> dict[str, int]:
        statuses = [s.step_run.status for s in self.steps]
        return {
            "total": len(statuses),
            "done": sum(s in STEP_DONE for s in statuses),
            "waiting": sum(s in WAITING for s in statuses),
            "failed": sum(s == StepStatus.FAILED for s in statuses),
        }


def _version(status: str, last_event_id, steps: list[tuple]) -> str:
    return hashlib.sha256(repr((status, last_event_id, steps)).encode()).hexdigest()[:32]


def _step_state(sr) -> tuple:
    return (sr.status, sr.attempt, sr.escalations, sr.assignee_id)


def run_version(*, run_id) -> str | None:
    """A token that changes whenever the timeline would: the run's status, its last event
    and its steps' states. Two small queries; None when there is no such run."""
    head = (
        Run.objects.filter(pk=run_id)
        .annotate(last_event=Max("events__id"))
        .values_list("status", "last_event")
        .first()
    )
    if head is None:
        return None
    steps = StepRun.objects.filter(run_id=run_id).order_by("position", "pk")
    states = [
        tuple(row) for row in steps.values_list("status", "attempt", "escalations", "assignee_id")
    ]
    return _version(head[0], head[1], states)


def _dag_order(step_runs: list[StepRun]) -> list[StepRun]:
    """Dependencies first; among steps free at once, the template's order."""
    by_key = {sr.step.key: sr for sr in step_runs}
    placed: set[str] = set()
    ordered: list[StepRun] = []
    remaining = sorted(step_runs, key=lambda sr: (sr.position, sr.step.position, str(sr.pk)))
    while remaining:
        ready = [
            sr
            for sr in remaining
            if all(d in placed or d not in by_key for d in sr.step.depends_on or [])
        ]
        if not ready:  # a cycle cannot be published; show what is left as it stands
            ready = remaining
        for sr in ready:
            placed.add(sr.step.key)
            ordered.append(sr)
        remaining = [sr for sr in remaining if sr.step.key not in placed]
    return ordered


def _duration(start: datetime | None, end: datetime | None, now: datetime) -> timedelta | None:
    if start is None:
        return None
    return max((end or now) - start, timedelta(0))


def _error_text(error) -> str:
    """``denied — grant_missing: Neither the agent nor its role ...`` from a step's error."""
    if not error:
        return ""
    if not isinstance(error, dict):
        return str(error)
    code = str(error.get("code") or "")
    text = str(error.get("message") or "")
    reasons = [r for r in error.get("reasons") or [] if isinstance(r, dict)]
    if not text and reasons:
        text = "; ".join(
            f"{r.get('code')}: {r.get('message')}" if r.get("message") else str(r.get("code"))
            for r in reasons
        )
    if code and text:
        return f"{code} — {text}"
    return text or code or as_text(error)


def _step_view(run: Run, sr: StepRun, finished: dict[str, datetime | None], now) -> StepView:
    step = sr.step
    if sr.assignee_id:
        assignee, kind = sr.assignee.name, "agent"
    elif sr.assignee_role_id:
        assignee, kind = sr.assignee_role.group.name, "role"
    elif step.assignee_agent_id:
        assignee, kind = step.assignee_agent.name, "agent"
    elif step.assignee_role_id:
        assignee, kind = step.assignee_role.group.name, "role"
    else:
        assignee, kind = "", ""
    view = StepView(
        step_run=sr,
        depends_on=list(step.depends_on or []),
        assignee=assignee,
        assignee_kind=kind,
        error_text=_error_text(sr.error),
        controls=step_controls(run=run, step_run=sr),
    )
    if sr.action_id:
        view.action_url = reverse("admin:autonomy_actionrequest_change", args=[sr.action_id])
        view.approval = getattr(sr.action, "approval", None)
        if view.approval is not None:
            view.approval_url = reverse("approvals:detail", args=[view.approval.pk])
            view.approval_waited = _duration(
                view.approval.created_at, view.approval.decided_at, now
            )
    if sr.status != StepStatus.PENDING:
        deps = [finished.get(d) for d in view.depends_on]
        view.ready_at = sr.dispatched_at or max(
            [d for d in deps if d is not None], default=run.created_at
        )
        view.waited = _duration(view.ready_at, sr.started_at or sr.finished_at, now)
        view.ran = _duration(sr.started_at, sr.finished_at, now)
    return view


def _context_diff(diff: dict) -> list[DiffRow]:
    """The changed entries of one context key, one row per sub-key when both sides are
    objects, so a person sees what changed instead of two blobs."""
    before, after = diff.get("before"), diff.get("after")
    if isinstance(after, dict) and before is None:
        before = {}
    if isinstance(before, dict) and isinstance(after, dict):
        rows = []
        for key in [*before, *(k for k in after if k not in before)]:
            if key not in after:
                rows.append(DiffRow(str(key), before[key], None, "removed"))
            elif key not in before:
                rows.append(DiffRow(str(key), None, after[key], "added"))
            elif before[key] != after[key]:
                rows.append(DiffRow(str(key), before[key], after[key], "changed"))
        return rows
    if after is None:
        return [DiffRow("", before, None, "removed")]
    return [DiffRow("", before, after, "added" if before is None else "changed")]


def _masked_context(context, *, results: dict, viewer):
    """``context`` with each step output (under the step's context key) as ``viewer`` may
    see it; ``results`` maps context keys to the operations whose results they hold."""
    if not isinstance(context, dict):
        return context
    return {
        key: masking.mask(results[key], value, viewer=viewer, result=True)
        if key in results
        else value
        for key, value in context.items()
    }


def _event_view(
    event: RunEvent, step_keys: dict, *, results: dict | None = None, viewer=None
) -> EventView:
    label, tone = EVENT_LOOK.get(event.kind, (event.kind.replace("_", " ").capitalize(), "info"))
    data = dict(event.data or {})
    view = EventView(
        event=event, label=label, tone=tone, step_key=step_keys.get(event.step_run_id, "")
    )
    diff = data.pop("context_diff", None)
    if isinstance(diff, dict) and diff.get("key") in (results or {}):
        operation = results[diff["key"]]
        diff = {
            **diff,
            "before": masking.mask(operation, diff.get("before"), viewer=viewer, result=True),
            "after": masking.mask(operation, diff.get("after"), viewer=viewer, result=True),
        }
    if isinstance(diff, dict):
        view.diff_key = str(diff.get("key") or "")
        view.diff = _context_diff(diff)
    action_id = data.pop("action_id", None)
    if action_id:
        view.action_url = reverse("admin:autonomy_actionrequest_change", args=[action_id])
        view.trace_url = reverse("observability:action-trace", args=[action_id])
    reasons = data.pop("reasons", None)
    if isinstance(reasons, list):
        view.reasons = [
            {"code": str(r.get("code") or ""), "message": str(r.get("message") or "")}
            for r in reasons
            if isinstance(r, dict)
        ]
    if isinstance(data.get("error"), dict):
        data["error"] = _error_text(data["error"])
    view.details = {
        k.replace("_", " "): as_text(v) for k, v in data.items() if v not in (None, "", [], {})
    }
    return view


def run_timeline(*, run_id, viewer=None, events_limit: int = EVENTS_SHOWN) -> RunTimeline | None:
    """Everything the run page shows, in six queries whatever the size of the run; step
    outputs as ``viewer`` may see them (``None``: masked)."""
    run = Run.objects.select_related("template").filter(pk=run_id).first()
    if run is None:
        return None
    now = timezone.now()
    step_runs = list(
        StepRun.objects.filter(run=run)
        .order_by("position", "pk")
        .select_related(
            "step__operation__connector",
            "step__assignee_agent",
            "step__assignee_role__group",
            "assignee",
            "assignee_role__group",
            "action__approval",
        )
    )
    finished = {sr.step.key: sr.finished_at for sr in step_runs}
    steps = [_step_view(run, sr, finished, now) for sr in _dag_order(step_runs)]
    # The newest events, one more than shown, to know whether older ones were left out
    # without counting them all.
    newest = list(RunEvent.objects.filter(run=run).order_by("-id")[: events_limit + 1])
    step_keys = {sr.pk: sr.step.key for sr in step_runs}
    results = {sr.step.context_key: sr.step.operation for sr in step_runs if sr.step.operation}
    events = [
        _event_view(e, step_keys, results=results, viewer=viewer)
        for e in reversed(newest[:events_limit])
    ]
    events_total = len(newest)
    if len(newest) > events_limit:
        events_total = RunEvent.objects.filter(run=run).count()
    claims = list(
        Claim.objects.filter(run=run).select_related("agent").order_by("resource_key", "-pk")
    )
    # The newest ones, shown oldest first: a busy run's new messages must not fall off.
    messages = list(
        Message.objects.filter(run=run)
        .select_related("sender", "recipient", "step_run__step")
        .order_by("-id")[:EVENTS_SHOWN]
    )[::-1]
    version = _version(
        run.status, newest[0].pk if newest else None, [_step_state(sr) for sr in step_runs]
    )
    return RunTimeline(
        run=run,
        steps=steps,
        events=events,
        events_total=events_total,
        claims=claims,
        messages=messages,
        controls=run_controls(run=run),
        version=version,
        context=_masked_context(run.context, results=results, viewer=viewer),
    )
