"""Use cases of runs: start, advance, execute steps, agent tasks, and people's controls.

The database holds all state; Celery tasks only carry step-run ids. Every transition locks
the run row, so two branches finishing at once advance the run one after the other. A step's
action uses the idempotency key ``step-run:<id>:<attempt>``, and executing it goes through the
connector with the action id as its key, so a redelivered task never causes a second effect.

    pending ─deps done─▶ ready ─worker─▶ running ─action settled─▶ succeeded ─▶ (advance)
                           │                 └─▶ waiting_approval ─decided─┘
                           └─(task step)─▶ waiting_agent ─claim─▶ running ─complete─┘
    failure: retry with backoff → escalate (agent / role, then a person) → fail → compensate
"""

import functools
import logging
import threading
from datetime import timedelta

import jsonschema
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.models import F, Func, OuterRef, Q, Subquery
from django.utils import timezone

from agents.models import Agent, AgentStatus
from autonomy import actions, audit, liveness, rows
from autonomy import services as kernel
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionRequest, ActionStatus
from autonomy.policy import engine as policy_engine
from workflows import conditions, selectors
from workflows.models import (
    RUN_FINISHED,
    STEP_ACTIVE,
    STEP_DONE,
    Approval,
    Run,
    RunEvent,
    RunStatus,
    StepKind,
    StepRun,
    StepStatus,
    Template,
)
from workflows.transitions import run_controls, step_controls

log = logging.getLogger(__name__)
ACTION_FINISHED = (
    ActionStatus.SUCCEEDED,
    ActionStatus.FAILED,
    ActionStatus.DENIED,
    ActionStatus.CANCELLED,
)
_inline = threading.local()  # the action a step task is executing right now, in this thread


# --- helpers --------------------------------------------------------------------------------


def _event(run: Run, kind: str, message: str, *, step_run=None, actor="", **data) -> None:
    # Prepared INSERTs and UPDATEs (autonomy.rows) on the step path: no signal listens to
    # saves of runs, step runs or run events.
    rows.insert_later(  # with the transaction's other events, in a step's (rows.inserts_deferred)
        RunEvent.new(
            run=run, step_run=step_run, kind=kind, actor=actor, message=message[:500], data=data
        )
    )


def _lock_run(run_id) -> Run:
    # ``of=self``: lock the run row only, never the template every run shares.
    return Run.objects.select_for_update(of=("self",)).select_related("template").get(pk=run_id)


# The step path's locking reads, compiled once (autonomy.rows.Select): compiling them was
# most of their cost. Measured on a 30-step run in one process: 6.9 -> 4.7 ms per step.
_LOCK_RUN = rows.Select(
    # ``of=self``: the run row only. One query finds and locks the run through its step run.
    lambda key: (
        Run.objects.select_for_update(of=("self",))
        .select_related("template")
        .filter(step_runs__pk=key)
        .order_by()
    ),
    StepRun._meta.pk,
)
_LOCK_STEP_RUN = rows.Select(
    lambda key: (
        StepRun.objects.select_for_update(of=("self",))
        .select_related(
            "step__operation__connector",
            "assignee__service_user",
            "assignee__role",  # its group only by id (the gate's grants): not joined
            "assignee__business_unit",
        )
        .filter(pk=key)
    ),
    StepRun._meta.pk,
)
# Of an agent's service user, a step's request needs its id and its username (the audit
# trail's actor); the rest (password hash, names, dates) is left unread.
_USER_UNREAD = [
    f"service_user__{f.name}"
    for f in Agent.service_user.field.related_model._meta.concrete_fields
    if f.name not in ("id", "username")
]
# Nor does it need these columns of the agent, its business unit and its role: descriptions,
# dates and the IdP client (an agent's token is checked where it authenticates, not here).
# Unread, they cost no conversion (six datetimes a step); read on access, as Django reads
# deferred fields.
_ASSIGNEE_UNREAD = [
    *_USER_UNREAD,
    *("description", "status_changed_at", "tokens_valid_after", "oidc_client_id"),
    *("created_at", "updated_at", "business_unit__description", "business_unit__created_at"),
    *("role__description", "role__created_at"),
]
_ASSIGNEE = rows.Select(
    lambda key: (
        Agent.objects.select_related("service_user", "role", "business_unit")
        .defer(*_ASSIGNEE_UNREAD)
        .filter(pk=key)
    ),
    Agent._meta.pk,
)
# Who gets a step of a role: its active agents, the least work in flight first, ties by slug.
# Two statements of this one rule, each compiled once (``rows.Select``): the id alone
# (``_pick_agent_id``), and the agent read whole as ``_ASSIGNEE`` reads it, for a step made
# ready where the next may be claimed at once (``_claim_next``), which then reads it no more.
_IN_FLIGHT = Subquery(
    StepRun.objects.filter(assignee=OuterRef("pk"), status__in=STEP_ACTIVE)
    .order_by()
    .annotate(n=Func(F("pk"), function="COUNT"))
    .values("n")
)


def _least_busy(role_key):
    return Agent.objects.filter(role=role_key, status=AgentStatus.ACTIVE).order_by(
        _IN_FLIGHT, "slug"
    )


_ROLE_KEY = Agent._meta.get_field("role")
_PICK_AGENT_ID = rows.Select(lambda key: _least_busy(key).values_list("pk")[:1], _ROLE_KEY)
_PICK_ASSIGNEE = rows.Select(
    lambda key: (
        _least_busy(key)
        .select_related("service_user", "role", "business_unit")
        .defer(*_ASSIGNEE_UNREAD)[:1]
    ),
    _ROLE_KEY,
)
_ASSIGNEE_FIELD = StepRun._meta.get_field("assignee")
# What recording a step's outcome reads again (``_relock``). Left unread, as the outcome
# only sets them or never touches them: the run's creation and the step run's input,
# earlier output and error, timestamps and compensation. Read on access, as Django reads
# deferred fields (a failure path may).
_RELOCK_RUN = rows.Select(
    lambda key: Run.objects.select_for_update().defer("created_at").filter(pk=key), Run._meta.pk
)
_RELOCK_STEP_RUN_UNREAD = [
    *("input", "output", "error", "claimed_at", "next_attempt_at", "dispatched_at"),
    *("started_at", "compensation_action"),
]
_RELOCK_STEP_RUN = rows.Select(
    lambda key: StepRun.objects.select_for_update().defer(*_RELOCK_STEP_RUN_UNREAD).filter(pk=key),
    StepRun._meta.pk,
)


def _lock(step_run_id) -> tuple[StepRun | None, Run | None]:
    """Lock a step run and its run, always the run first, so no two transactions wait on
    each other in opposite orders."""
    run = _LOCK_RUN.get(step_run_id)
    if run is None:
        return None, None
    return _LOCK_STEP_RUN.one(step_run_id), run


def _dispatch(step_run_id, *, countdown: float | None = None) -> None:
    from workflows import tasks

    ready = getattr(_inline, "ready", None)
    if ready is not None and not countdown:
        ready.append(step_run_id)  # the worker's step task sends it, or runs it (step_work)
        return

    def send():
        if countdown:
            tasks.step_execute.apply_async((str(step_run_id),), countdown=countdown)
        else:
            tasks.step_execute.delay(str(step_run_id))

    transaction.on_commit(send)


def _run_not_active(run: Run) -> DomainError:
    return DomainError(
        ErrorCode.RUN_NOT_ACTIVE, f"The run is {run.status}.", {"status": run.status}, 409
    )


def _actor(by) -> str:
    if by is None:
        return "system"
    if isinstance(by, Agent):
        return by.slug
    return getattr(by, "username", str(by))


def _pick_agent(role) -> Agent | None:
    """The active agent of ``role`` with the least work in flight (ties by slug), read
    whole as a step's assignee is (``_PICK_ASSIGNEE``)."""
    return _PICK_ASSIGNEE.get(role.pk) if role is not None else None


def _pick_agent_id(role_id):
    """The id of the active agent of the role with the least work in flight (ties by slug);
    None without a role or an active agent. A step made ready needs no more than the id."""
    if role_id is None:
        return None  # every agent has a role: no role, nobody
    found = _PICK_AGENT_ID.rows(role_id)
    return found[0][0] if found else None


# --- starting and advancing -----------------------------------------------------------------


def run_start(
    *, template: Template, context: dict | None = None, by=None, idempotency_key: str = ""
) -> Run:
    """Start a run of a published template version; the run pins that version."""
    context = context or {}
    if not template.is_published:
        raise DomainError(
            ErrorCode.TEMPLATE_NOT_PUBLISHED,
            f"{template} is not published.",
            {"template": template.key, "version": template.version},
            status_code=409,
        )
    if not isinstance(context, dict):
        raise DomainError(ErrorCode.CONTEXT_INVALID, "The context must be a JSON object.")
    if template.context_schema:
        errors = list(jsonschema.Draft202012Validator(template.context_schema).iter_errors(context))
        if errors:
            raise DomainError(
                ErrorCode.CONTEXT_INVALID,
                f"The context does not fit {template}: {errors[0].message}",
                {"errors": [e.message for e in errors[:20]]},
            )
    if idempotency_key:
        existing = _run_for_key(idempotency_key, template)
        if existing is not None:
            return existing
    try:
        return _run_create(template=template, context=context, by=by, key=idempotency_key)
    except IntegrityError:
        existing = _run_for_key(idempotency_key, template) if idempotency_key else None
        if existing is None:
            raise
        return existing  # a concurrent start with the same key won


def _run_for_key(key: str, template: Template) -> Run | None:
    existing = Run.objects.filter(idempotency_key=key).first()
    if existing is not None and existing.template_id != template.pk:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key started a run of another template.",
            {"run_id": str(existing.pk)},
            status_code=409,
        )
    return existing


def _run_create(*, template: Template, context: dict, by, key: str) -> Run:
    with transaction.atomic():
        run = Run.objects.create(
            template=template, context=context, started_by=_actor(by), idempotency_key=key or None
        )
        StepRun.objects.bulk_create(
            StepRun(run=run, step=step, position=step.position) for step in template.steps.all()
        )
        _event(run, "run_started", f"Started from {template}.", actor=_actor(by))
        audit.append(
            kind="run_started",
            actor=_actor(by),
            payload={"run_id": str(run.pk), "template": template.key, "version": template.version},
        )
        advance(run=_lock_run(run.pk))
    return run


# What ``advance`` reads of a step run (its step comes from ``selectors.template_steps``), in
# the model's field order, as ``Model.from_db`` takes them: with what claiming it inline
# (``_claim_next``) reads and writes, so that a step made ready is claimed without reading
# its row again.
_ADVANCE_WANTED = {
    "id", "run_id", "step_id", "status", "assignee_id", "assignee_role_id",
    "attempt", "generation", "escalations", "action_id", "started_at", "worker",
}  # fmt: skip
ADVANCE_COLUMNS = [f.attname for f in StepRun._meta.concrete_fields if f.attname in _ADVANCE_WANTED]
_STEP, _STATUS = ADVANCE_COLUMNS.index("step_id"), ADVANCE_COLUMNS.index("status")
_OPEN_STEP_RUNS = rows.Select(
    lambda key: (
        StepRun.objects.filter(run_id=key)
        .exclude(status__in=STEP_DONE)
        .order_by("position")
        .values_list(*ADVANCE_COLUMNS)
    ),
    Run._meta.pk,
)


# The one step run of a run and step, in ``ADVANCE_COLUMNS`` (``_advance_to_successor``).
@functools.cache
def _successor_sql(alias: str) -> str:
    quote, meta = connections[alias].ops.quote_name, StepRun._meta
    column = {f.attname: quote(f.column) for f in meta.concrete_fields}
    columns = ", ".join(column[name] for name in ADVANCE_COLUMNS)
    return (
        f"SELECT {columns} FROM {quote(meta.db_table)}"
        f" WHERE {column['run_id']} = %(run)s AND {column['step_id']} = %(step)s"
    )


_RUN_KEY = StepRun._meta.get_field("run")


def _advance_to_successor(*, run: Run, after) -> bool:
    """``advance`` after ``after`` succeeded, when ``after`` is the only dependency of the
    only step that depends on it (a linear stretch): make that step ready, reading its row
    alone, not every step run still open. Nothing else can have become ready, and the run
    cannot be finished with that step open. Returns False, having changed nothing, where
    the whole ``advance`` is needed: no such step, its row not pending, or its condition not
    holding (skipped steps move the run on in their turn)."""
    successor = selectors.sole_successor(run.template, after)
    if successor is None:
        return False
    connection = rows.db()
    with rows.cursor(connection) as cursor:
        cursor.execute(
            _successor_sql(connection.alias),
            {"run": _RUN_KEY.get_db_prep_value(run.pk, connection), "step": successor.pk},
        )
        row = cursor.fetchone()
    if row is None or row[_STATUS] != StepStatus.PENDING:
        return False
    if not conditions.holds(successor.run_when, run.context):
        return False
    sr = StepRun.from_db(connection.alias, ADVANCE_COLUMNS, _OPEN_STEP_RUNS.convert(row))
    rows.attach(sr, "run", run)
    rows.attach(sr, "step", selectors.step_copy(successor))
    _make_ready(run=run, step_run=sr)
    return True


def advance(*, run: Run, after=None) -> None:
    """Move every step whose dependencies are done; finish the run when all steps are.
    ``after``: the step that just succeeded, when that is all that changed (``_succeed``).

    Call with the run row locked, inside a transaction.
    """
    if run.status != RunStatus.RUNNING:
        return
    if after is not None and _advance_to_successor(run=run, after=after):
        return
    # Only the steps not done yet: a done step never changes while the run runs, so a long
    # run does not read its finished steps again at every step. A dependency missing here is
    # done (publishing refuses a dependency that names no step of the template). Plain rows,
    # read by a statement compiled once, and the version's steps from the process's cache; a
    # step run becomes an object only when it moves (the ORM's joined, deferred-field read
    # of the same cost 3.4x as much, measured on a 30-step run).
    open_rows = _OPEN_STEP_RUNS.rows(run.pk, convert=False)  # a row that moves is converted
    db = run._state.db or "default"
    steps = selectors.template_steps(run.template)
    status = {steps[row[_STEP]].key: row[_STATUS] for row in open_rows}
    pending = [row for row in open_rows if row[_STATUS] == StepStatus.PENDING]
    changed = True
    while changed:
        changed = False
        for row in pending:
            if run.status != RunStatus.RUNNING:
                return  # a step just failed the run: its siblings were cancelled
            step = steps[row[_STEP]]
            if status[step.key] != StepStatus.PENDING or not all(
                status.get(dep, StepStatus.SUCCEEDED) in STEP_DONE for dep in step.depends_on
            ):
                continue
            sr = StepRun.from_db(db, ADVANCE_COLUMNS, _OPEN_STEP_RUNS.convert(row))
            rows.attach(sr, "run", run)
            rows.attach(sr, "step", selectors.step_copy(step))
            if not conditions.holds(sr.step.run_when, run.context):
                sr.status = StepStatus.SKIPPED
                sr.finished_at = timezone.now()
                sr.save(update_fields=["status", "finished_at"])
                _event(
                    run,
                    "step_skipped",
                    f"{sr.step.name}: {sr.step.run_when!r} does not hold.",
                    step_run=sr,
                )
            else:
                _make_ready(run=run, step_run=sr)
            status[step.key] = sr.status
            changed = True
    if run.status == RunStatus.RUNNING and all(value in STEP_DONE for value in status.values()):
        run.status = RunStatus.SUCCEEDED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        _event(run, "run_succeeded", "Every step is done.")
        audit.append(
            kind="run_finished",
            actor="system",
            payload={"run_id": str(run.pk), "status": run.status},
        )


# What making a step ready writes of its step run.
MADE_READY_FIELDS = ["status", "input", "assignee", "assignee_role", "dispatched_at"]


def _write_made_ready() -> None:
    """Write the step runs made ready whose write was left for their inline claim
    (``_claim_next``), which is not coming: before anything else reads step runs."""
    pending = getattr(_inline, "unwritten", None)
    while pending:
        rows.update(pending.pop(), MADE_READY_FIELDS)


def _make_ready(*, run: Run, step_run: StepRun) -> None:
    _write_made_ready()  # an earlier one first: the agent pick below counts ready steps
    step = step_run.step
    now = timezone.now()
    step_run.input = conditions.resolve(step.input_map, run.context)
    if step_run.assignee_id is None and step_run.assignee_role_id is None:
        step_run.assignee_id = step.assignee_agent_id
        step_run.assignee_role_id = step.assignee_role_id
    if step.kind == StepKind.TASK:
        step_run.status = StepStatus.WAITING_AGENT
        step_run.save(update_fields=["status", "input", "assignee", "assignee_role"])
        who = step_run.assignee or step_run.assignee_role
        _event(run, "task_offered", f"{step.name} offered to {who}.", step_run=step_run)
        return
    made_ready = getattr(_inline, "made_ready", None)
    if step_run.assignee_id is None:
        if made_ready is None or step_run.assignee_role_id is None:
            step_run.assignee_id = _pick_agent_id(step_run.assignee_role_id)
        elif (agent := _PICK_ASSIGNEE.get(step_run.assignee_role_id)) is not None:
            rows.attach(step_run, "assignee", agent)  # read whole: its claim reads it no more
    step_run.status = StepStatus.READY
    step_run.dispatched_at = now
    if made_ready is not None and step_run.assignee_id is not None:
        # May be claimed inline, in this transaction (``_claim_next``): then the claim's own
        # write says all of this too, one statement fewer; else ``_write_made_ready``.
        made_ready[step_run.pk] = step_run
        _inline.unwritten.append(step_run)
    else:
        rows.update(step_run, MADE_READY_FIELDS)
    if step_run.assignee_id is None:
        _attempt_failed(
            run=run,
            step_run=step_run,
            kind="failed",
            error={"code": "no_active_agent", "message": f"Nobody active in {step.assignee_role}."},
        )
        return
    _dispatch(step_run.pk)


# --- executing an operation step (on a worker) ----------------------------------------------


def step_work(*, step_run_id) -> None:
    """A worker's step task: execute the step; then, while that made exactly one operation
    step of the run ready, execute that one too, at once, in this task.

    A linear stretch of a run then goes step after step on the worker that finished the
    step before, without a broker round trip in between, and a run under load finishes in
    its turn instead of all runs finishing together at the end. The next step is claimed
    (its request through the gate) in the transaction that records the step before it, so
    the run stays locked from one to the next. A worker that dies between steps leaves the
    next one ready, or its action claimed as executing, and ``workflows_sweep`` sends it
    again as it does any ready step whose message was lost or running step whose lease ran
    out. Two or more steps made ready at once (parallel branches) are sent, to run in
    parallel; so is everything after ``AUTONOMY_WORKFLOW_INLINE_STEPS`` steps in a row, so
    that other runs' steps get their turn.
    """
    chain = 0 if rows.db().in_atomic_block else settings.AUTONOMY_WORKFLOW_INLINE_STEPS
    ready: list = []
    _inline.ready = ready
    try:
        step_execute(step_run_id=step_run_id, chain=chain)
    finally:
        _inline.ready = None
        _send_all(ready)  # made ready in a transaction that committed (maybe, on an error)


def _send_all(step_run_ids: list) -> None:
    """Send steps made ready (after commit when the caller's transaction is still open)."""
    for step_run_id in step_run_ids:
        if rows.db().in_atomic_block:
            transaction.on_commit(lambda i=step_run_id: _send(i))
        else:
            _send(step_run_id)
    step_run_ids.clear()


def step_execute(*, step_run_id, chain: int = 0) -> StepRun | None:
    """Request the step's action through the gate as its assignee and, if allowed, execute it.

    Idempotent: a ready step makes its request once per attempt (keyed by step run and
    attempt); a running step whose action is approved or executing is executed again, which
    the connector's idempotency key makes harmless; anything else is left alone.

    With ``chain`` (from ``step_work``), up to that many following steps that the run makes
    ready one at a time are claimed and executed here too. Returns the last step run.
    """
    # Audit records are written at the end of each transaction (``audit.deferred``): the
    # chain's head is locked last, after the run, the step and the gate's usage rows.
    execute_action, recover, claimed = None, False, None
    with transaction.atomic(), audit.deferred(), rows.inserts_deferred():
        step_run, run = _lock(step_run_id)
        if step_run is None:
            return None
        if run.status != RunStatus.RUNNING or step_run.step.kind != StepKind.OPERATION:
            if run.status == RunStatus.CANCELLED:
                _effect_after_cancel(run=run, step_run=step_run)
            return step_run
        waiting = (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL)
        if step_run.status in waiting and step_run.action_id:
            action = step_run.action
            if step_run.status == StepStatus.RUNNING and action.status in (
                ActionStatus.APPROVED,
                ActionStatus.EXECUTING,
            ):
                # Sent again after its lease ran out or its worker stopped beating (the
                # worker died): execute once more; the connector's idempotency key keeps it
                # to one side effect. This worker now answers for it.
                execute_action, recover = action.pk, action.status == ActionStatus.EXECUTING
                worker = liveness.current_worker()
                if step_run.worker != worker:
                    step_run.worker = worker
                    rows.update(step_run, ["worker"])
            elif action.status in ACTION_FINISHED:
                _on_action_settled(step_run=step_run, run=run, action=action)
        elif step_run.status == StepStatus.READY:
            # Allowed: claimed as executing in this transaction, so it runs here at once.
            claimed = _request_action(run=run, step_run=step_run)
    while claimed is not None or execute_action is not None:
        action_id = _inline.action_id = claimed.pk if claimed is not None else execute_action
        try:
            # The connector call, then in one transaction: the action's outcome and the
            # step's, and the next step's claim.
            if claimed is not None:
                action = actions.action_perform(action_id=claimed.pk, action=claimed)
            else:
                action = actions.action_execute(action_id=execute_action, recover=recover)
            record = {"step_run": step_run, "run": run, "action": action, "action_id": action_id}
            record["settle"] = claimed is not None
            try:
                step_run, run, following = _record(**record, chain=chain)
            except Exception:
                if chain <= 0:
                    raise
                # Rolled back whole, the step's outcome with the claim. Record the step
                # alone; the step it made ready is sent, as any ready step is.
                log.exception("could not record step run %s with the next; alone", step_run.pk)
                step_run, run, following = _record(**record, chain=0)
        finally:
            _inline.action_id = None
        if following is None:
            break
        step_run, claimed, execute_action, chain = following[0], following[1], None, chain - 1
    return step_run


def _record(*, step_run: StepRun, run: Run, action, action_id, settle: bool, chain: int):
    """One transaction after a step's connector call: the action's outcome (``settle``: the
    action this worker claimed and performed) and the step's, locked in the usual order (run,
    step run, then the action); with ``chain``, the claim of the one step that made ready
    (``_claim_next``). Returns the step run, the run and that claim. Steps made ready by a
    transaction that rolls back are not sent."""
    ready = getattr(_inline, "ready", None)
    saved = list(ready) if ready is not None else None
    # The step runs this transaction makes ready, by id, when the next may be claimed here;
    # those of them not written yet.
    inline = chain > 0 and ready is not None
    _inline.made_ready, _inline.unwritten = ({}, []) if inline else (None, None)
    try:
        with transaction.atomic(), audit.deferred(), rows.inserts_deferred():
            step_run, run = _relock(step_run=step_run, run=run)
            if settle:
                action = actions.action_settle(action=action)
            elif action is None or action.status not in ACTION_FINISHED:
                # Left to another delivery that is executing it: see where it is now.
                action = ActionRequest.objects.get(pk=action_id)
            _after_execution(step_run=step_run, run=run, action=action)
            following = _claim_next(run=run) if chain > 0 else None
            _write_made_ready()
    except BaseException:
        if ready is not None:
            ready[:] = saved
        raise
    finally:
        _inline.made_ready = _inline.unwritten = None
    return step_run, run, following


def _claim_next(*, run: Run) -> tuple[StepRun, ActionRequest] | None:
    """In the transaction that just finished a step of ``run`` (locked): when that made
    exactly one operation step ready, lock it and ask the gate for its action. Returns the
    step run and its action when allowed (claimed as executing, for the caller to run);
    otherwise the step is left to be sent, as any ready step is. No savepoint (two round
    trips a step): if this fails, the whole transaction goes, and ``step_execute`` records
    the step before it again, without the claim."""
    ready = getattr(_inline, "ready", None)
    if not ready or len(ready) != 1 or run.status != RunStatus.RUNNING:
        _write_made_ready()
        return None
    # Made ready by this transaction, which holds the run (every change to a step run locks
    # its run first): the row ``advance`` read, and only its agent read again here, fresh.
    # The operation is the one this process read last for the policy-store version it
    # compiled; the gate confirms that version in this transaction, so a changed operation
    # or connector (which moves the version) is read again (``actions.action_request``).
    step_run_id = ready.pop()
    step_run = (_inline.made_ready or {}).pop(step_run_id, None)
    also = []  # what making it ready changed, when that is not written yet
    if step_run is None:
        _write_made_ready()
        step_run = _LOCK_STEP_RUN.one(step_run_id)
    else:
        unwritten = _inline.unwritten
        if step_run in unwritten:
            unwritten.remove(step_run)
            also = _READY_NOT_ATTEMPT
        _write_made_ready()
        if not _ASSIGNEE_FIELD.is_cached(step_run):  # else read whole by ``_make_ready``
            rows.attach(step_run, "assignee", _ASSIGNEE.one(step_run.assignee_id))
        rows.attach(
            step_run.step, "operation", selectors.step_operation(step_run.step.operation_id)
        )
    claimed = _request_action(run=run, step_run=step_run, also=also)
    return (step_run, claimed) if claimed is not None else None


def _after_execution(*, step_run: StepRun, run: Run, action: ActionRequest) -> None:
    if run.status == RunStatus.RUNNING and action.status in ACTION_FINISHED:
        _on_action_settled(step_run=step_run, run=run, action=action)
    elif run.status == RunStatus.CANCELLED:
        _effect_after_cancel(run=run, step_run=step_run)


def _relock(*, step_run: StepRun, run: Run) -> tuple[StepRun, Run]:
    """Lock again, in a later transaction, a step run and its run read by ``_lock``: fresh
    rows, run first. The step and the template (a published version's, so never changed)
    are reused."""
    template, step = run.template, step_run.step
    run, step_run = _RELOCK_RUN.one(run.pk), _RELOCK_STEP_RUN.one(step_run.pk)
    rows.attach(run, "template", template)
    rows.attach(step_run, "step", step)
    return step_run, run


# What starting an attempt changes on its step run.
ATTEMPT_FIELDS = [
    "attempt", "status", "started_at", "lease_until", "next_attempt_at", "input", "worker"
]  # fmt: skip


# What making a step ready writes that starting an attempt does not.
_READY_NOT_ATTEMPT = [name for name in MADE_READY_FIELDS if name not in ATTEMPT_FIELDS]


def _request_action(*, run: Run, step_run: StepRun, also=()) -> ActionRequest | None:
    """Ask the gate as the step's assignee. Returns the action when it was allowed, claimed
    as executing in the caller's transaction for this worker to run at once. ``also``:
    further fields of the step run to write with the attempt's."""
    fields = [*ATTEMPT_FIELDS, *also]
    step = step_run.step
    now = timezone.now()
    step_run.attempt += 1
    step_run.status = StepStatus.RUNNING
    step_run.started_at = step_run.started_at or now
    step_run.lease_until = now + timedelta(seconds=step.timeout_seconds)
    step_run.next_attempt_at = None
    step_run.input = conditions.resolve(step.input_map, run.context)
    step_run.worker = liveness.current_worker()
    gate_reason = ""
    if step.approval == Approval.ALWAYS or (
        step.approval == Approval.WHEN and conditions.holds(step.approval_when, run.context)
    ):
        gate_reason = f"The workflow asks for approval at {step.name}" + (
            f" ({step.approval_when})." if step.approval == Approval.WHEN else "."
        )
    guess = policy_engine.compiled_version()
    try:
        action, _ = actions.action_request(
            agent=step_run.assignee,
            operation_key=step.operation.key,
            operation=step.operation,  # read with its connector: not looked up again
            params=step_run.input,
            reason=f"{run.template.name}: {step.name} (run {run.pk})",
            idempotency_key=f"step-run:{step_run.pk}:{step_run.generation}:{step_run.attempt}",
            approval_gate=gate_reason,
            run_here=True,  # allowed: recorded as executing, for this worker to run at once
            fresh_key=True,  # its attempt was counted just now, under the step run's lock
        )
    except DomainError as exc:
        step_run.save(update_fields=fields)
        _attempt_failed(
            run=run,
            step_run=step_run,
            kind="invalid",
            error={"code": str(exc.code), "message": exc.message, "details": exc.details},
        )
        return None
    selectors.step_operation_confirmed(operation=step.operation, guess=guess, action=action)
    rows.attach(step_run, "action", action)
    rows.update(step_run, [*fields, "action"])
    _event(
        run,
        "action_requested",
        f"{step.name}: {step_run.assignee} asked for "
        f"{step.operation.key}; the gate said {action.verdict}.",
        step_run=step_run,
        actor=step_run.assignee.slug,
        action_id=str(action.pk),
        attempt=step_run.attempt,
        risk_score=action.risk_score,
    )
    if action.status == ActionStatus.EXECUTING:
        return action
    if action.status == ActionStatus.PENDING_APPROVAL:
        step_run.status = StepStatus.WAITING_APPROVAL
        step_run.save(update_fields=["status"])
        _event(
            run,
            "waiting_approval",
            f"{step.name} waits for a person's approval.",
            step_run=step_run,
            reasons=action.reasons,
        )
        return None
    _on_action_settled(step_run=step_run, run=run, action=action)
    return None


def on_action_settled(*, action: ActionRequest) -> None:
    """Signal receiver: an action reached its end; its step moves on in a task.

    It runs inside the transaction that settled the action (a person's decision, an expiry, a
    kill), which holds the approval and action rows; locking the run here would take locks in
    the opposite order to a run being cancelled. So the step is only sent to ``step_execute``
    after commit. A step executing its action inline settles it itself.
    """
    if getattr(_inline, "action_id", None) == action.pk:
        return
    step_run_id = StepRun.objects.filter(action_id=action.pk).values_list("pk", flat=True).first()
    if step_run_id is not None:
        transaction.on_commit(lambda: _send(step_run_id))


def _on_action_settled(*, step_run: StepRun, run: Run, action: ActionRequest) -> None:
    if step_run.status not in (StepStatus.RUNNING, StepStatus.WAITING_APPROVAL):
        return
    step = step_run.step
    if action.status == ActionStatus.SUCCEEDED:
        _succeed(run=run, step_run=step_run, output=action.outcome or {}, actor="worker")
    elif action.status == ActionStatus.FAILED:
        _attempt_failed(run=run, step_run=step_run, kind="failed", error=action.error or {})
    elif action.status == ActionStatus.DENIED:
        codes = {r.get("code") for r in action.reasons}
        people = codes & {"approval_rejected", "approval_expired"}
        _attempt_failed(
            run=run,
            step_run=step_run,
            kind="rejected" if people else "denied",
            error={"code": "rejected" if people else "denied", "reasons": action.reasons},
        )
    elif action.status == ActionStatus.CANCELLED:
        step_run.status = StepStatus.CANCELLED
        step_run.finished_at = timezone.now()
        step_run.save(update_fields=["status", "finished_at"])
        _event(run, "step_cancelled", f"{step.name}: its action was cancelled.", step_run=step_run)
        _run_fail(run=run, reason=f"{step.name} was cancelled.")


def _succeed(*, run: Run, step_run: StepRun, output: dict, actor: str) -> None:
    step = step_run.step
    step_run.status = StepStatus.SUCCEEDED
    step_run.output = output
    step_run.error = None
    step_run.finished_at = timezone.now()
    step_run.lease_until = None
    rows.update(step_run, ["status", "output", "error", "finished_at", "lease_until"])
    before = run.context.get(step.context_key)
    run.context[step.context_key] = output
    rows.update(run, ["context"])
    _event(
        run,
        "step_succeeded",
        f"{step.name} done.",
        step_run=step_run,
        actor=actor,
        context_diff={"key": step.context_key, "before": before, "after": output},
    )
    advance(run=run, after=step)


# --- failure: retry, escalate, fail and compensate ------------------------------------------


def _escalation_levels(step) -> list[str]:
    levels = []
    if step.escalate_to_agent_id or step.escalate_to_role_id:
        levels.append("agent")
    if step.escalate_to_human:
        levels.append("human")
    return levels


def _attempt_failed(*, run: Run, step_run: StepRun, kind: str, error: dict) -> None:
    """One attempt failed. ``kind``: failed (retryable), denied (by the gate), rejected (by
    people), invalid (bad input), escalated (the agent asked), timeout (no result in time)."""
    step = step_run.step
    now = timezone.now()
    step_run.error = error
    step_run.lease_until = None
    if kind == "failed" and step_run.attempt < step.max_retries + 1 and step_run.assignee_id:
        delay = step.retry_backoff_seconds * (2 ** max(step_run.attempt - 1, 0))
        step_run.next_attempt_at = now + timedelta(seconds=delay)
        step_run.dispatched_at = now
        if step.kind == StepKind.TASK:
            step_run.status = StepStatus.WAITING_AGENT  # offered again once the backoff is over
            step_run.claimed_at = None
        else:
            step_run.status = StepStatus.READY
        step_run.save()
        _event(
            run,
            "retry_scheduled",
            f"{step.name} failed (attempt {step_run.attempt}); retrying in {delay}s.",
            step_run=step_run,
            error=error,
        )
        if step.kind == StepKind.OPERATION:
            _dispatch(step_run.pk, countdown=delay)
        return
    levels = _escalation_levels(step)
    escalable = ("failed", "denied", "escalated", "invalid", "timeout")
    if kind in escalable and step_run.escalations < len(levels):
        level = levels[step_run.escalations]
        step_run.escalations += 1
        if level == "human":
            step_run.status = StepStatus.ESCALATED
            step_run.save()
            _event(
                run,
                "escalated_to_person",
                f"{step.name} needs a person: retry, skip or fail it.",
                step_run=step_run,
                error=error,
            )
            return
        target = step.escalate_to_agent
        if target is None or not target.is_active:
            target = _pick_agent(step.escalate_to_role) if step.escalate_to_role_id else None
        if target is not None:
            previous = step_run.assignee
            step_run.assignee = target
            step_run.attempt = 0
            step_run.generation += 1
            step_run.claimed_at = None
            if step.kind == StepKind.TASK:
                step_run.status = StepStatus.WAITING_AGENT
                step_run.save()
            else:
                step_run.status = StepStatus.READY
                step_run.dispatched_at = now
                step_run.save()
                _dispatch(step_run.pk)
            _event(
                run,
                "escalated",
                f"{step.name} escalated from {previous} to {target}.",
                step_run=step_run,
                error=error,
                to=target.slug,
            )
            return
        if "human" in levels[step_run.escalations :]:
            return _attempt_failed(run=run, step_run=step_run, kind=kind, error=error)
    step_run.status = StepStatus.FAILED
    step_run.finished_at = now
    step_run.save()
    _event(run, "step_failed", f"{step.name} failed.", step_run=step_run, error=error)
    _run_fail(run=run, reason=f"{step.name} failed.")


def _run_fail(*, run: Run, reason: str) -> None:
    """Stop the run's other work and undo what was done, in reverse order, on a worker."""
    if run.status in (*RUN_FINISHED, RunStatus.COMPENSATING):
        return
    _cancel_open_steps(run=run, reason=reason)
    run.status = RunStatus.COMPENSATING
    run.save(update_fields=["status"])
    _event(run, "compensating", f"{reason} Undoing completed steps.")
    from workflows import tasks

    run_id = str(run.pk)
    transaction.on_commit(lambda: tasks.run_compensate.delay(run_id))


def _cancel_open_steps(*, run: Run, reason: str) -> None:
    now = timezone.now()
    open_steps = list(
        run.step_runs.select_for_update(of=("self",))
        .select_related("step")
        .filter(status__in=[StepStatus.PENDING, *STEP_ACTIVE])
    )
    # Waiting for people, or approved and not yet started: neither will run now. An action
    # already executing finishes (its connector call is in flight); if it succeeds, its
    # step's compensation undoes it (``_effect_after_cancel``), which the run's events say.
    actions.actions_cancel_waiting(
        pk__in=[sr.action_id for sr in open_steps if sr.action_id],
        code="run_cancelled",
        message=f"Cancelled with its workflow run: {reason}",
    )
    StepRun.objects.filter(pk__in=[sr.pk for sr in open_steps]).update(
        status=StepStatus.CANCELLED, finished_at=now, lease_until=None
    )
    for sr in open_steps:
        if sr.status != StepStatus.PENDING:
            _event(run, "step_cancelled", f"{sr.step.name} cancelled: {reason}", step_run=sr)


def run_compensate(*, run_id) -> Run:
    """Run the compensation of every succeeded step, last finished first, then fail the run.

    Idempotent: compensated steps are skipped and each compensation action is keyed by its
    step run, so a redelivered task neither repeats nor skips one.
    """
    run = Run.objects.get(pk=run_id)
    if run.status != RunStatus.COMPENSATING:
        return run
    done = (
        run.step_runs.filter(
            status=StepStatus.SUCCEEDED, step__compensation_operation__isnull=False
        )
        .select_related("step__compensation_operation__connector", "assignee")
        .order_by("-finished_at", "-position")
    )
    failed = 0
    for step_run in done:
        failed += 0 if _compensate_step(run=run, step_run=step_run) else 1
    with transaction.atomic():
        run = _lock_run(run.pk)
        if run.status == RunStatus.COMPENSATING:
            run.status = RunStatus.FAILED
            run.finished_at = timezone.now()
            run.save(update_fields=["status", "finished_at"])
            _event(
                run,
                "run_failed",
                "The run failed; completed steps were compensated."
                if not failed
                else f"The run failed; {failed} compensation(s) did not succeed — see above.",
                compensations_failed=failed,
            )
            audit.append(
                kind="run_finished",
                actor="system",
                payload={"run_id": str(run.pk), "status": run.status},
            )
    return run


def _compensate_step(*, run: Run, step_run: StepRun) -> bool:
    """Undo one step's side effect with its compensation operation, through the gate; True
    when undone. Idempotent: the compensation action is keyed by the step run.

    Call outside a transaction, with the step run read with its step, its compensation
    operation and its assignee: the connector call happens in between two of its own.
    """
    step = step_run.step
    # The agent that did the step undoes it; if it was stopped since, someone of its role
    # (or the escalation target) does, so a kill never leaves a payment un-voided.
    undoer = step_run.assignee
    if undoer is None or not undoer.is_active:
        undoer = (
            (
                _pick_agent(step_run.assignee_role or step.assignee_role)
                if (step_run.assignee_role_id or step.assignee_role_id)
                else None
            )
            or (step.escalate_to_agent if step.escalate_to_agent_id else None)
            or undoer
        )
    params = conditions.resolve(
        step.compensation_input_map, {**run.context, "output": step_run.output or {}}
    )
    with transaction.atomic():
        try:
            action, _ = actions.action_request(
                agent=undoer,
                operation_key=step.compensation_operation.key,
                params=params,
                reason=f"Compensate {step.name} of run {run.pk}",
                idempotency_key=f"compensate:{step_run.pk}",
                run_here=True,
            )
        except DomainError as exc:
            action = None
            _event(run, "compensation_failed", f"{step.name}: {exc.message}", step_run=step_run)
        if action is not None:
            StepRun.objects.filter(pk=step_run.pk).update(compensation_action=action)
    if action is not None and action.status in (ActionStatus.APPROVED, ActionStatus.EXECUTING):
        # A redelivered compensation: the earlier attempt's worker is gone.
        action = actions.action_execute(action_id=action.pk, recover=True)
    with transaction.atomic():
        run = _lock_run(run.pk)
        step_run = StepRun.objects.select_for_update().get(pk=step_run.pk)
        if step_run.status == StepStatus.COMPENSATED:
            return True  # undone already, by an earlier delivery
        ok = action is not None and action.status == ActionStatus.SUCCEEDED
        if ok:
            step_run.status = StepStatus.COMPENSATED
            step_run.save(update_fields=["status"])
        _event(
            run,
            "step_compensated" if ok else "compensation_failed",
            f"{step.name}: {step.compensation_operation.key} "
            + ("done." if ok else f"ended {getattr(action, 'status', 'unrequested')}."),
            step_run=step_run,
            action_id=str(action.pk) if action else None,
        )
    return ok


# --- agent tasks ----------------------------------------------------------------------------


def _task_for(agent: Agent):
    return StepRun.objects.filter(
        Q(assignee=agent) | Q(assignee__isnull=True, assignee_role_id=agent.role_id),
        Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()),
        status=StepStatus.WAITING_AGENT,
        run__status=RunStatus.RUNNING,
    )


def require_active(agent: Agent) -> None:
    """A paused, quarantined or retired agent takes, hands and coordinates no work."""
    if not agent.is_active:
        code = {
            AgentStatus.PAUSED: ErrorCode.AGENT_PAUSED,
            AgentStatus.QUARANTINED: ErrorCode.AGENT_QUARANTINED,
        }.get(agent.status, ErrorCode.AGENT_RETIRED)
        raise DomainError(code, f"{agent} is {agent.status}.", status_code=403)


def _not_available(step_run_id, why: str) -> DomainError:
    return DomainError(ErrorCode.TASK_NOT_AVAILABLE, why, {"task": str(step_run_id)}, 409)


def task_claim(*, agent: Agent, step_run_id, lease_seconds: int | None = None) -> StepRun:
    """Take an offered task; nobody else can until it is completed, handed off or its lease
    runs out."""
    require_active(agent)
    with transaction.atomic():
        step_run, run = _lock(step_run_id)
        if step_run is None or not _task_for(agent).filter(pk=step_run.pk).exists():
            if step_run is not None and step_run.assignee_id == agent.pk:
                if step_run.status == StepStatus.RUNNING:
                    return step_run  # claimed already by this agent: a retried claim
            raise _not_available(step_run_id, "This task is not offered to you.")
        now = timezone.now()
        step_run.status = StepStatus.RUNNING
        step_run.assignee = agent
        step_run.attempt += 1
        step_run.claimed_at = now
        step_run.started_at = step_run.started_at or now
        step_run.lease_until = now + timedelta(
            seconds=lease_seconds or step_run.step.timeout_seconds
        )
        step_run.save()
        _event(
            run,
            "task_claimed",
            f"{agent} took {step_run.step.name}.",
            step_run=step_run,
            actor=agent.slug,
        )
    return step_run


def task_next(*, agent: Agent, claim: bool = True) -> StepRun | None:
    """The oldest task offered to the agent (or its role), claimed for it unless told not to.

    Two agents asking at once never get the same task: a lost race moves to the next one.
    """
    require_active(agent)
    for step_run_id in (
        _task_for(agent).order_by("run__created_at", "position").values_list("pk", flat=True)[:20]
    ):
        if not claim:
            return StepRun.objects.select_related("step", "run").get(pk=step_run_id)
        try:
            return task_claim(agent=agent, step_run_id=step_run_id)
        except DomainError:
            continue
    return None


def _own_running(agent: Agent, step_run_id) -> tuple[StepRun, Run]:
    step_run, run = _lock(step_run_id)
    if step_run is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such task.", status_code=404)
    if step_run.assignee_id != agent.pk:
        raise DomainError(ErrorCode.TASK_NOT_YOURS, "This task is not yours.", status_code=403)
    if step_run.status != StepStatus.RUNNING:
        raise _not_available(step_run_id, f"This task is {step_run.status}.")
    return step_run, run


def task_context(*, agent: Agent, step_run_id) -> dict:
    """What the task's agent may see: its inputs and the context keys its step names."""
    step_run = StepRun.objects.select_related("step", "run").filter(pk=step_run_id).first()
    if step_run is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such task.", status_code=404)
    if step_run.assignee_id != agent.pk:
        raise DomainError(ErrorCode.TASK_NOT_YOURS, "This task is not yours.", status_code=403)
    visible = step_run.step.visible_context or []
    return {
        "input": step_run.input,
        "context": {k: step_run.run.context[k] for k in visible if k in step_run.run.context},
    }


def task_complete(*, agent: Agent, step_run_id, output: dict) -> StepRun:
    """Finish the task; the output goes into the run's context under the step's key."""
    if not isinstance(output, dict):
        raise DomainError(ErrorCode.VALIDATION_FAILED, "output must be a JSON object.")
    with transaction.atomic():
        step_run = StepRun.objects.filter(pk=step_run_id).only("status", "assignee_id").first()
        if step_run is not None and step_run.status == StepStatus.SUCCEEDED:
            if step_run.assignee_id == agent.pk:
                return step_run  # a retried completion
        step_run, run = _own_running(agent, step_run_id)
        if run.status not in (RunStatus.RUNNING, RunStatus.PAUSED):
            raise _run_not_active(run)
        _succeed(run=run, step_run=step_run, output=output, actor=agent.slug)
    return step_run


def task_handoff(*, agent: Agent, step_run_id, to: Agent, reason: str = "") -> StepRun:
    """Pass the task to another agent, who finds it with ``task_next``."""
    if to.pk == agent.pk:
        raise DomainError(ErrorCode.VALIDATION_FAILED, "Hand off to another agent.")
    require_active(to)
    with transaction.atomic():
        step_run, run = _own_running(agent, step_run_id)
        step_run.assignee = to
        step_run.generation += 1  # chosen by a person or an agent: kept if its lease runs out
        step_run.status = StepStatus.WAITING_AGENT
        step_run.claimed_at = None
        step_run.lease_until = None
        step_run.save()
        _event(
            run,
            "handoff",
            f"{agent} handed {step_run.step.name} to {to}: {reason}",
            step_run=step_run,
            actor=agent.slug,
            to=to.slug,
            reason=reason,
        )
        audit.append(
            kind="task_handoff",
            actor=agent.slug,
            agent_id=agent.pk,
            payload={"step_run": str(step_run.pk), "to": to.slug, "reason": reason},
        )
    return step_run


def task_escalate(*, agent: Agent, step_run_id, reason: str) -> StepRun:
    """The agent cannot do it: escalate by the step's rule (another agent, then a person)."""
    with transaction.atomic():
        step_run, run = _own_running(agent, step_run_id)
        _event(run, "escalation_asked", f"{agent}: {reason}", step_run=step_run, actor=agent.slug)
        _attempt_failed(
            run=run,
            step_run=step_run,
            kind="escalated",
            error={"code": "escalated", "message": reason, "by": agent.slug},
        )
    return step_run


def task_fail(*, agent: Agent, step_run_id, message: str, retryable: bool = True) -> StepRun:
    with transaction.atomic():
        step_run, run = _own_running(agent, step_run_id)
        _attempt_failed(
            run=run,
            step_run=step_run,
            kind="failed" if retryable else "invalid",
            error={"code": "task_failed", "message": message, "by": agent.slug},
        )
    return step_run


# --- people's controls ----------------------------------------------------------------------


def _control(run: Run, by, kind: str, reason: str, *, step_run=None, **data) -> None:
    _event(
        run, kind, f"{_actor(by)}: {reason}" if reason else _actor(by), actor=_actor(by),
        step_run=step_run, **data,
    )  # fmt: skip
    audit.append(
        kind=f"run_{kind}",
        actor=_actor(by),
        payload={"run_id": str(run.pk), "reason": reason, **data}
        | ({"step_run": str(step_run.pk)} if step_run is not None else {}),
    )


def run_pause(*, run: Run, by, reason: str = "") -> Run:
    """No new step starts until resumed; steps already running finish."""
    with transaction.atomic():
        run = _lock_run(run.pk)
        if "pause" not in run_controls(run=run):
            raise _run_not_active(run)
        run.status = RunStatus.PAUSED
        run.save(update_fields=["status"])
        _control(run, by, "paused", reason)
    return run


def run_resume(*, run: Run, by, reason: str = "") -> Run:
    with transaction.atomic():
        run = _lock_run(run.pk)
        if "resume" not in run_controls(run=run):
            raise _run_not_active(run)
        run.status = RunStatus.RUNNING
        run.save(update_fields=["status"])
        _control(run, by, "resumed", reason)
        for step_run_id in run.step_runs.filter(status=StepStatus.READY).values_list(
            "pk", flat=True
        ):
            _dispatch(step_run_id)
        settled = run.step_runs.filter(
            status__in=[StepStatus.RUNNING, StepStatus.WAITING_APPROVAL],
            action__status__in=ACTION_FINISHED,
        )
        for step_run_id in settled.values_list("pk", flat=True):
            _dispatch(step_run_id)  # its action ended while the run was paused
        advance(run=run)
    return run


def run_cancel(*, run: Run, by, reason: str = "") -> Run:
    """Stop the run: open steps and waiting approvals are cancelled. Completed steps are not
    undone; an action that still succeeds (it was executing) is, by its step's compensation.
    """
    with transaction.atomic():
        run = _lock_run(run.pk)
        if "cancel" not in run_controls(run=run):
            raise _run_not_active(run)
        _cancel_open_steps(run=run, reason=reason or "run cancelled")
        run.status = RunStatus.CANCELLED
        run.finished_at = timezone.now()
        run.save(update_fields=["status", "finished_at"])
        _control(run, by, "cancelled", reason)
        # A step whose action ended well while the run was paused, before its worker moved
        # it on: its worker says what happened and undoes it (``_effect_after_cancel``).
        for step_run_id in run.step_runs.filter(
            status=StepStatus.CANCELLED, action__status=ActionStatus.SUCCEEDED
        ).values_list("pk", flat=True):
            _dispatch(step_run_id)
    return run


AFTER_CANCEL = ("compensating_after_cancel", "effect_not_compensated")


def _effect_after_cancel(*, run: Run, step_run: StepRun) -> None:
    """The step's action succeeded although its run was cancelled (it was executing when the
    cancel came, or ended while the run was paused): its side effect happened. Say so on the
    run and undo it with the step's compensation after commit, on this worker, as a failed
    run would; without one, say that the effect stays.

    Call with the run and the step run locked. Safe to repeat: it records once, and the
    compensation action is keyed by the step run.
    """
    if step_run.status != StepStatus.CANCELLED or not step_run.action_id:
        return
    action = ActionRequest.objects.get(pk=step_run.action_id)
    if action.status != ActionStatus.SUCCEEDED:
        return
    step = step_run.step
    undo = step.compensation_operation if step.compensation_operation_id else None
    if not run.events.filter(step_run=step_run, kind__in=AFTER_CANCEL).exists():
        step_run.output = action.outcome or {}  # what the compensation's input may name
        step_run.save(update_fields=["output"])
        done = f"{step.name}: {step.operation.key} succeeded after the run was cancelled"
        details = {"action_id": str(action.pk), "operation": step.operation.key}
        if undo is not None:
            _event(run, AFTER_CANCEL[0], f"{done}; undoing it with {undo.key}.",
                   step_run=step_run, compensation=undo.key, **details)  # fmt: skip
        else:
            _event(run, AFTER_CANCEL[1], f"{done}; it has no compensation, so its effect stays.",
                   step_run=step_run, **details)  # fmt: skip
            audit.append(
                kind="run_effect_not_compensated",
                actor="system",
                action_id=action.pk,
                payload={"run_id": str(run.pk), "step_run": str(step_run.pk)},
            )
    if undo is not None:
        step_run_id = step_run.pk
        transaction.on_commit(lambda: _compensate_after_cancel(step_run_id))


def _compensate_after_cancel(step_run_id) -> None:
    step_run = StepRun.objects.select_related(
        "run", "step__compensation_operation__connector", "assignee"
    ).get(pk=step_run_id)
    if step_run.status == StepStatus.CANCELLED:
        _compensate_step(run=step_run.run, step_run=step_run)


def _own_step(run: Run, step_run_id) -> StepRun:
    step_run = (
        StepRun.objects.select_for_update(of=("self",))
        .select_related("step")
        .filter(pk=step_run_id, run=run)
        .first()
    )
    if step_run is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such step in this run.", status_code=404)
    return step_run


def _controlled(step_run: StepRun, control: str, verb: str) -> tuple[StepRun, Run]:
    """Lock the step's run and the step, and refuse a control its state does not allow."""
    run = _lock_run(step_run.run_id)
    step_run = _own_step(run, step_run.pk)
    if control not in step_controls(run=run, step_run=step_run):
        raise DomainError(
            ErrorCode.STEP_NOT_ACTIONABLE,
            f"A {step_run.status} step of a {run.status} run cannot be {verb}.",
            status_code=409,
        )
    return step_run, run


def step_retry(*, step_run: StepRun, by, reason: str = "") -> StepRun:
    """A person sends an escalated or failed step round again as if it had just become ready:
    to the assignee its template names, with every retry and escalation level once more."""
    with transaction.atomic():
        step_run, run = _controlled(step_run, "retry", "retried")
        spent = {"attempts": step_run.attempt, "escalations": step_run.escalations,
                 "from": getattr(step_run.assignee, "slug", None)}  # fmt: skip
        _restart(step_run)
        if step_run.step.kind == StepKind.TASK:
            step_run.status = StepStatus.WAITING_AGENT
            step_run.save()
        else:
            if step_run.assignee is None:
                raise DomainError(
                    ErrorCode.STEP_NOT_ACTIONABLE,
                    f"Nobody active in {step_run.assignee_role} can take {step_run.step.name}.",
                    status_code=409,
                )
            step_run.status = StepStatus.READY
            step_run.dispatched_at = timezone.now()
            step_run.save()
            _dispatch(step_run.pk)
        _control(run, by, "step_retried", f"{step_run.step.name}. {reason}".strip(),
                 step_run=step_run, spent=spent)  # fmt: skip
    return step_run


def _restart(step_run: StepRun) -> None:
    """Give a step a person sends round again the budget it started with: attempts and
    escalations count from zero (else it could not escalate as its template says), under a
    new generation, so its actions get keys of their own, and back with its own assignee."""
    step = step_run.step
    step_run.attempt = step_run.escalations = 0
    step_run.generation += 1
    step_run.error = step_run.finished_at = None
    step_run.claimed_at = step_run.lease_until = step_run.next_attempt_at = None
    if step.kind == StepKind.TASK:
        step_run.assignee_id = step.assignee_agent_id  # none: offered to its role again
        return
    own = step.assignee_agent if step.assignee_agent_id else None
    if own is None or not own.is_active:
        own = _pick_agent(step_run.assignee_role)
    step_run.assignee = own or step_run.assignee  # nobody active in the role: as it was


REDIRECTABLE = (StepStatus.READY, StepStatus.WAITING_AGENT, StepStatus.ESCALATED)


def step_redirect(*, step_run: StepRun, to_agent: Agent, by, reason: str = "") -> StepRun:
    """A person hands a step that nobody is working on to another agent, with fresh retries."""
    require_active(to_agent)
    with transaction.atomic():
        run = _lock_run(step_run.run_id)
        step_run = _own_step(run, step_run.pk)
        if step_run.status not in REDIRECTABLE or run.status not in (
            RunStatus.RUNNING,
            RunStatus.PAUSED,
        ):
            raise DomainError(
                ErrorCode.STEP_NOT_ACTIONABLE,
                f"A {step_run.status} step of a {run.status} run cannot be redirected.",
                status_code=409,
            )
        previous = step_run.assignee
        step_run.assignee = to_agent
        step_run.attempt = 0
        step_run.generation += 1
        step_run.error = None
        step_run.claimed_at = None
        step_run.lease_until = None
        step_run.next_attempt_at = None
        if step_run.step.kind == StepKind.TASK:
            step_run.status = StepStatus.WAITING_AGENT
            step_run.save()
        else:
            step_run.status = StepStatus.READY
            step_run.dispatched_at = timezone.now()
            step_run.save()
            if run.status == RunStatus.RUNNING:
                _dispatch(step_run.pk)
        _control(
            run, by, "step_redirected",
            f"{step_run.step.name} from {previous or 'nobody'} to {to_agent}. {reason}".strip(),
        )  # fmt: skip
    return step_run


def agent_steps_cancel(*, agent: Agent, by, reason: str) -> int:
    """Cancel every open step assigned to ``agent`` (it was killed): each of their runs fails
    and compensates. Call inside the caller's transaction. Returns how many were cancelled."""
    run_ids = list(
        StepRun.objects.filter(assignee=agent, status__in=STEP_ACTIVE)
        .order_by("run_id")
        .values_list("run_id", flat=True)
        .distinct()
    )
    cancelled = 0
    for run_id in run_ids:
        run = _lock_run(run_id)
        now = timezone.now()
        for step_run in (
            run.step_runs.select_for_update(of=("self",))
            .select_related("step")
            .filter(assignee=agent, status__in=STEP_ACTIVE)
        ):
            step_run.status = StepStatus.CANCELLED
            step_run.finished_at = now
            step_run.lease_until = None
            step_run.save(update_fields=["status", "finished_at", "lease_until"])
            _event(run, "step_cancelled", f"{step_run.step.name}: {reason}", step_run=step_run,
                   actor=_actor(by))  # fmt: skip
            cancelled += 1
        _run_fail(run=run, reason=f"{agent} was stopped: {reason}")
    return cancelled


def step_skip(*, step_run: StepRun, by, reason: str = "") -> StepRun:
    """A person decides the step is not needed; the run goes on without its output."""
    with transaction.atomic():
        step_run, run = _controlled(step_run, "skip", "skipped")
        step_run.status = StepStatus.SKIPPED
        step_run.finished_at = timezone.now()
        step_run.save(update_fields=["status", "finished_at"])
        _control(run, by, "step_skipped", f"{step_run.step.name}. {reason}".strip())
        advance(run=run)
    return step_run


def step_fail(*, step_run: StepRun, by, reason: str = "") -> StepRun:
    """A person gives up on an escalated step: the run fails and compensates."""
    with transaction.atomic():
        step_run, run = _controlled(step_run, "fail", "failed by hand")
        step_run.status = StepStatus.FAILED
        step_run.finished_at = timezone.now()
        step_run.save(update_fields=["status", "finished_at"])
        _control(run, by, "step_failed", f"{step_run.step.name}. {reason}".strip())
        _run_fail(run=run, reason=f"{_actor(by)} failed {step_run.step.name}.")
    return step_run


# --- the clock ------------------------------------------------------------------------------


def workflows_sweep(*, now=None) -> dict[str, int]:
    """Recover work the broker or a worker lost; runs on Celery beat, safe to run twice.

    - ready steps whose message never arrived are dispatched again;
    - running operation steps past their lease, or whose worker stopped beating
      (``autonomy.liveness``), are dispatched again (the worker died; the action's
      idempotency makes re-execution harmless);
    - claimed tasks past their lease are offered again (the agent went away);
    - compensating runs whose task was lost are compensated again.
    """
    now = now or timezone.now()
    stale = now - timedelta(seconds=settings.AUTONOMY_WORKFLOW_REDISPATCH_SECONDS)
    counts = {"redispatched": 0, "lease_expired": 0, "worker_lost": 0, "timed_out": 0,
              "tasks_reoffered": 0, "compensations": 0}  # fmt: skip
    ready = StepRun.objects.filter(status=StepStatus.READY, run__status=RunStatus.RUNNING).filter(
        Q(next_attempt_at__isnull=True, dispatched_at__lte=stale) | Q(next_attempt_at__lte=stale)
    )
    for step_run_id in ready.values_list("pk", flat=True)[:1000]:
        if StepRun.objects.filter(pk=step_run_id, status=StepStatus.READY).update(
            dispatched_at=now
        ):
            transaction.on_commit(lambda i=step_run_id: _send(i))
            counts["redispatched"] += 1
    alive = kernel.workers_alive(now=now)
    worker_lost = Q(step__kind=StepKind.OPERATION) & ~Q(worker="") & ~Q(worker__in=alive)
    expired = StepRun.objects.filter(
        Q(lease_until__lte=now) | worker_lost,
        status=StepStatus.RUNNING,
        run__status=RunStatus.RUNNING,
    ).select_related("step")
    for step_run in expired[:1000]:
        with transaction.atomic():
            step_run, run = _lock(step_run.pk)
            lost = (
                step_run is not None
                and step_run.step.kind == StepKind.OPERATION
                and step_run.worker not in alive | {""}
            )
            if (
                step_run.status != StepStatus.RUNNING
                or not step_run.lease_until
                or (step_run.lease_until > now and not lost)
                or run.status != RunStatus.RUNNING
            ):
                continue
            if step_run.step.kind == StepKind.TASK:
                if step_run.attempt > step_run.step.max_retries:
                    # Claimed as often as retries allow and never finished: a lapsed lease
                    # is a failed attempt too, so the task escalates (or fails) instead of
                    # going round agents that take it and go away, for ever.
                    _attempt_failed(run=run, step_run=step_run, kind="timeout", error={
                        "code": "task_timeout",
                        "message": f"Claimed {step_run.attempt} times; no result within "
                        f"any lease.",
                    })  # fmt: skip
                    counts["timed_out"] += 1
                    continue
                step_run.status = StepStatus.WAITING_AGENT
                # A task someone sent to this agent (hand-off, escalation, redirect) stays
                # with it while it is active; otherwise it goes back to whom the step names.
                chosen = step_run.generation > 0 or step_run.escalations > 0
                if not (chosen and step_run.assignee and step_run.assignee.is_active):
                    step_run.assignee = step_run.step.assignee_agent
                step_run.claimed_at = None
                step_run.lease_until = None
                step_run.save()
                _event(
                    run,
                    "task_lease_expired",
                    f"{step_run.step.name}: the agent's lease ran out; offered again.",
                    step_run=step_run,
                )
                counts["tasks_reoffered"] += 1
                continue
            executions = step_run.action.attempts if step_run.action_id else 0
            if executions > step_run.step.max_retries:
                # Re-executed as often as retries allow and still not done: a timeout.
                _attempt_failed(run=run, step_run=step_run, kind="timeout", error={
                    "code": "step_timeout",
                    "message": f"No result after {executions} executions of "
                    f"{step_run.step.timeout_seconds}s each.",
                })  # fmt: skip
                counts["timed_out"] += 1
                continue
            step_run.lease_until = now + timedelta(seconds=step_run.step.timeout_seconds)
            worker, step_run.worker = step_run.worker, ""  # the next execution names its own
            step_run.save(update_fields=["lease_until", "worker"])
            if lost:
                _event(
                    run,
                    "worker_lost",
                    f"{step_run.step.name}: its worker {worker} stopped; dispatched again.",
                    step_run=step_run,
                    worker=worker,
                )
            else:
                _event(
                    run,
                    "lease_expired",
                    f"{step_run.step.name} ran past its lease; dispatched again.",
                    step_run=step_run,
                )
            _dispatch(step_run.pk)
            counts["worker_lost" if lost else "lease_expired"] += 1
    from workflows import tasks

    lost = Run.objects.filter(status=RunStatus.COMPENSATING).exclude(events__created_at__gt=stale)
    for run_id in lost.values_list("pk", flat=True)[:100]:
        transaction.on_commit(lambda i=str(run_id): tasks.run_compensate.delay(i))
        counts["compensations"] += 1
    return counts


def _send(step_run_id) -> None:
    from workflows import tasks

    tasks.step_execute.delay(str(step_run_id))
