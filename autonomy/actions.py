"""The action lifecycle: the one module that writes ``ActionRequest.status``.

    received ─request─▶ denied | pending_approval | approved | executing (run by its caller)
    pending_approval ─release─▶ approved | denied (decided again: the gate may refuse now)
    pending_approval ─reject / expire─▶ denied
    pending_approval | approved (not started) ─cancel─▶ cancelled
    received | pending_approval ─(the shadow level)─▶ shadowed: recorded, never executed
    approved ─execute─▶ executing ─settle─▶ succeeded | failed

Each transition is one function that checks it is legal (``_move``) and writes the status,
the audit record and the signal together, in one transaction: ``action_needs_approval`` when
an action waits for people (``approvals`` opens its request), ``action_settled`` when it
reaches an end (workflow steps move on, approval requests close). Nothing else writes
``status``: approvals, interventions and workflows call these functions.
"""

import functools
import hashlib
import json
import logging
import time
from datetime import timedelta

import jsonschema
from django.conf import settings
from django.db import (
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    transaction,
)
from django.utils import timezone

from autonomy import (
    audit,
    connectors,
    dispatch,
    gate,
    grants,
    liveness,
    masking,
    selectors,
    services,
    signals,
    usage,
)
from autonomy.content import results
from autonomy.errors import DomainError, ErrorCode, IllegalTransition
from autonomy.models import ActionRequest, ActionStatus, HumanDecision, Operation, Verdict
from autonomy.observability import rollup, tracing
from autonomy.observability.request_id import current as current_request_id
from autonomy.policy import engine as policy_engine
from autonomy.policy import trials as policy_trials
from autonomy.standing import services as standing_services

log = logging.getLogger(__name__)

S = ActionStatus
STATUS_FOR_VERDICT = {
    Verdict.ALLOW: S.APPROVED,
    Verdict.DENY: S.DENIED,
    Verdict.NEEDS_APPROVAL: S.PENDING_APPROVAL,
}
# Every legal move; ``executing`` to itself is an execution taken back from a lost worker.
TRANSITIONS = {
    S.PENDING_APPROVAL: {S.APPROVED, S.DENIED, S.CANCELLED, S.SHADOWED},
    S.APPROVED: {S.EXECUTING, S.CANCELLED},
    S.EXECUTING: {S.EXECUTING, S.SUCCEEDED, S.FAILED},
}


def _move(action: ActionRequest, status: str, **fields) -> ActionRequest:
    """Set ``status`` (and ``fields``) on a locked action and save them, or refuse an
    illegal move."""
    if status not in TRANSITIONS.get(action.status, ()):
        raise IllegalTransition(current=action.status, target=status)
    action.status = status
    for name, value in fields.items():
        setattr(action, name, value)
    action.save(update_fields=["status", *fields])
    return action


def _outcome_recorded(action: ActionRequest, actor: str, error=None) -> None:
    """An action reached an end: its audit record and ``action_settled``, in the transaction
    that moved it."""
    audit.append(
        kind="action_outcome",
        actor=actor,
        agent_id=action.agent_id,
        action_id=action.pk,
        payload={"status": action.status, "outcome": action.outcome, "error": error},
    )
    signals.action_settled.send(sender=ActionRequest, action=action)


def _locked(action_id, *related) -> ActionRequest | None:
    # get(), not first(): no ORDER BY (the model orders by -created_at) to build
    try:
        return (
            ActionRequest.objects.select_for_update(of=("self",))
            .select_related("operation__connector", *related)
            .get(pk=action_id)
        )
    except ActionRequest.DoesNotExist:
        return None


def _canonical(data) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


@functools.lru_cache(maxsize=512)
def _validator(schema_text: str) -> jsonschema.Draft202012Validator:
    """One validator per distinct schema, built once (building one per request cost more
    than validating)."""
    return jsonschema.Draft202012Validator(json.loads(schema_text))


def validate_params(*, operation: Operation, params) -> dict:
    """Parameters must be a JSON object within size and satisfy the operation's schema."""
    if not isinstance(params, dict):
        raise DomainError(ErrorCode.PARAMS_INVALID, "params must be a JSON object.")
    size = len(_canonical(params).encode())
    if size > settings.AUTONOMY_MAX_PARAMS_BYTES:
        raise DomainError(
            ErrorCode.PARAMS_TOO_LARGE,
            "params are too large.",
            {"limit_bytes": settings.AUTONOMY_MAX_PARAMS_BYTES, "size_bytes": size},
            status_code=413,
        )
    if operation.params_schema:
        validator = _validator(_canonical(operation.params_schema))
        errors = sorted(validator.iter_errors(params), key=lambda e: list(e.path))
        if errors:
            raise DomainError(
                ErrorCode.PARAMS_INVALID,
                f"params do not match the schema of {operation.key}.",
                {
                    "errors": [
                        {"path": "/".join(map(str, e.path)) or "(root)", "message": e.message}
                        for e in errors[:20]
                    ]
                },
            )
    return params


def _operation_unknown(key: str) -> DomainError:
    return DomainError(
        ErrorCode.OPERATION_UNKNOWN,
        f"There is no operation {key!r}. Operations are named <connector>.<operation>.",
        {"operation": key},
    )


def _validated_for(*, agent, operation: Operation, params) -> dict:
    """``validate_params``, telling the agent nothing of an operation it is not granted: its
    parameters refused answer as an unknown operation does, so the refusal does not show
    the schema. The grant is read only on that path; valid parameters go on to the gate,
    which denies an ungranted operation and records the attempt."""
    try:
        return validate_params(operation=operation, params=params)
    except DomainError as refused:
        if refused.code == ErrorCode.PARAMS_INVALID and not grants.is_granted(
            operation=operation, agent=agent
        ):
            raise _operation_unknown(operation.key) from None
        raise


def resolve_operation(*, key: str, version: int | None = None) -> Operation:
    operation = selectors.operation_by_key(key=key or "", version=version)
    if operation is None:
        raise _operation_unknown(key)
    return operation


@tracing.traced_request
def action_request(
    *,
    agent,
    operation_key: str,
    params: dict,
    reason: str = "",
    credential=None,
    idempotency_key: str | None = None,
    approval: gate.ApprovalAsk | None = None,
    run_here: bool = False,
    operation: Operation | None = None,
    fresh_key: bool = False,
    template_key: str | None = None,
) -> tuple[ActionRequest, bool]:
    """Decide and record one action (``received`` to its first state). Returns (action,
    replayed).

    The same idempotency key with the same request returns the first action; with a
    different request it is refused, so a retry can never become a second, other action.
    ``approval`` asks the gate to send an action it would allow to people anyway, as a
    workflow's approval step does (always, or when its condition holds). An allowed action
    goes to a worker after commit; with ``run_here`` it is recorded as executing straight
    away instead, in the caller's transaction, for the caller to run now (``action_perform``, then
    ``action_settle``: a workflow step does, on the worker it already runs on). A caller that
    read ``operation`` (with its connector) in its own transaction passes it, and it is not
    looked up again. ``fresh_key``: the caller knows that no action has ``idempotency_key``
    yet (a workflow step's names its attempt), so the probe for a replay is skipped.
    ``template_key``: the workflow template a step acts for, whose autonomy level applies.
    An action decided at the shadow level (and not denied) is recorded ``shadowed``: it is
    never executed, nor sent to people. An allowed action of a connector that answers from
    our own database (``connectors.runs_inline``: shared memory) is executed here, in the
    transaction that records its decision, and returned settled: a read is only useful with
    its answer.

    The decision is made inside the transaction that records it, after ``usage.hold``: no
    concurrent request of the same agent reads the limits between this one's read and its
    write, so a rate limit or a daily budget holds exactly under any concurrency.
    """
    # The operation and the policies a request is decided on come from one registry state.
    # A request starts from a guess of the version, and the gate's one read confirms it (a
    # round trip saved on every request); when the store moved, the operation is resolved
    # again on the version that read saw.
    if operation is None:
        guess = selectors.cached_version()
    else:
        guess = policy_engine.compiled_version()
    version = guess if guess is not None else policy_engine.store_version()
    if operation is None or operation.key != operation_key:
        operation = resolve_operation(key=operation_key, version=version)
    params = _validated_for(agent=agent, operation=operation, params=params)
    request_hash = hashlib.sha256(
        _canonical({"op": operation.key, "params": params, "reason": reason}).encode()
    ).hexdigest()
    if idempotency_key and not fresh_key:
        existing = _replay(agent=agent, key=idempotency_key, request_hash=request_hash)
        if existing is not None:
            return existing, True

    now = timezone.now()
    with transaction.atomic(savepoint=False):
        usage.hold(agent_id=agent.pk)
        try:
            decision = gate.decide(
                agent=agent, operation=operation, params=params, credential=credential,
                version=version, confirm_version=guess is not None, approval=approval,
                template_key=template_key, trials=True,
            )  # fmt: skip
        except gate.VersionMoved as moved:
            version = moved.version
            operation = resolve_operation(key=operation_key, version=version)
            params = _validated_for(agent=agent, operation=operation, params=params)
            decision = gate.decide(
                agent=agent, operation=operation, params=params, credential=credential,
                version=version, approval=approval, template_key=template_key, trials=True,
            )  # fmt: skip
        if decision.standing and not decision.shadow:
            # A standing approval settled its reasons to ask a person: count the use on its
            # daily bound, here, in the transaction that records the action.
            decision.standing_used(
                standing_services.standing_consume(candidates=decision.standing, at=now)
            )
        if decision.params is not None:
            # A content rule replaced text (redact, or a blocked match): the original is
            # neither stored, audited nor sent.
            params = decision.params
        status = S.SHADOWED if decision.shadow else STATUS_FOR_VERDICT[decision.verdict]
        decided_at = timezone.now()
        action = ActionRequest(
            agent=agent,
            credential=credential,
            operation=operation,
            params=params,
            reason=reason,
            idempotency_key=idempotency_key or None,
            request_hash=request_hash,
            verdict=decision.verdict,
            status=status,
            risk_score=decision.risk_score,
            risk_factors=decision.risk_factors,
            reasons=decision.reasons,
            policy_ids=decision.policies,
            amount=decision.amount,
            request_id=current_request_id(),
            trace_id=tracing.current_trace_id(),
            created_at=now,
            decided_at=decided_at,
            finished_at=decided_at if status == S.SHADOWED else None,
            autonomy_level=decision.level.level,
            template_key=template_key or "",
        )
        inline = not run_here and status == S.APPROVED and connectors.runs_inline(operation)
        if (run_here or inline) and status == S.APPROVED:
            # Its caller (or, inline, this function) runs it now: executing from the start,
            # one write fewer.
            action.status, action.started_at, action.attempts = S.EXECUTING, decided_at, 1
        if not _inserted(action, may_clash=bool(idempotency_key) and not fresh_key):
            # A concurrent request with the same key committed first: answer with its action.
            existing = _replay(agent=agent, key=idempotency_key, request_hash=request_hash)
            if existing is None:
                raise IntegrityError(f"action {action.pk} clashed with a row that is gone")
            return existing, True
        rollup.rollup_record(action=action)
        usage.usage_record(action=action)
        # Log-only trials whose draft would have decided otherwise (the outcome stands).
        policy_trials.differences_record(action=action, decision=decision)
        audit.append(
            kind="action_decision",
            actor=agent.service_user.username,
            agent_id=agent.pk,
            action_id=action.pk,
            payload={
                "operation": operation.key,
                "params": params,
                "reason": reason,
                "decision": decision.as_dict(),
                "request_id": action.request_id,
            },
        )
        if action.status == S.APPROVED:
            dispatch_on_commit(action.pk)
        elif action.status == S.PENDING_APPROVAL:
            signals.action_needs_approval.send(sender=ActionRequest, action=action)
        elif action.status == S.SHADOWED:
            signals.action_settled.send(sender=ActionRequest, action=action)
        if inline:
            # Our own database, a few statements: executed and settled in the transaction
            # that records the decision, so decision, change and outcome commit together.
            action = action_settle(action=action_perform(action_id=action.pk, action=action))
    return action, False


def _inserted(action: ActionRequest, *, may_clash: bool) -> bool:
    """Insert the new action. Where another request may hold its idempotency key, in a
    savepoint, so that losing the race inserts nothing and leaves the transaction usable."""
    if not may_clash:
        action.save(force_insert=True)
        return True
    try:
        with transaction.atomic():
            action.save(force_insert=True)
    except IntegrityError:
        return False
    return True


def _replay(*, agent, key: str, request_hash: str) -> ActionRequest | None:
    found = (
        ActionRequest.objects.filter(agent_id=agent.pk, idempotency_key=key)
        .order_by()
        .values_list("pk", "request_hash")
        .first()
    )
    if found is None:
        return None
    if found[1] != request_hash:
        raise DomainError(
            ErrorCode.IDEMPOTENCY_KEY_REUSED,
            "This Idempotency-Key was used for a different request.",
            {"action_id": str(found[0])},
            status_code=409,
        )
    return ActionRequest.objects.select_related("operation__connector").get(pk=found[0])


def dispatch_on_commit(action_id) -> None:
    """Send an approved action to a worker once the transaction commits, off the request
    thread (``autonomy.dispatch``); ``actions_redispatch`` resends a publish that was lost."""
    transaction.on_commit(lambda: dispatch.publisher.submit(str(action_id)))


# --- people's answers -----------------------------------------------------------------------


# The approval codes that are people's answers (an expiry is nobody's): recorded on the action
# as ``human_decision``, the rollouts' override ratio.
PEOPLE_APPROVED = {"approval_granted", "approval_overridden"}
PEOPLE_REJECTED = {"approval_rejected"}


def action_release(*, action_id, code: str, message: str, params: dict | None = None):
    """A person approved a waiting action (``pending_approval``): decide it again, as it is
    now, and send it to a worker, or deny it when the gate refuses now (a grant revoked, the
    agent stopped, a policy tightened or a budget spent while it waited), with the reasons
    in its trace. ``params``: the approver's narrowed parameters, when they changed them.
    Returns the action as it now stands; one no longer waiting is left as it is. Run it in
    the caller's transaction (the approval's)."""
    with transaction.atomic(savepoint=False):
        action = _locked(action_id, "agent__role", "agent__business_unit")
        if action is None or action.status != S.PENDING_APPROVAL:
            return action
        if params is not None:
            params = masking.restore(action.operation, params, action.params)
            action.params = validate_params(operation=action.operation, params=params)
        usage.hold(agent_id=action.agent_id)
        decision = gate.decide(
            agent=action.agent,
            operation=action.operation,
            params=action.params,
            release=True,
            template_key=action.template_key or None,
        )
        if decision.params is not None:  # a content rule added while it waited replaced text
            action.params = decision.params
        now = timezone.now()
        reasons = [*action.reasons, gate.reason_entry(code, message)]
        released = decision.verdict != Verdict.DENY
        said = action.human_decision or (HumanDecision.APPROVED if code in PEOPLE_APPROVED else "")
        if decision.shadow:
            # The level moved to shadow while it waited: recorded, never executed.
            reasons += decision.reasons[-1:]
            _move(action, S.SHADOWED, reasons=reasons, params=action.params, finished_at=now,
                  autonomy_level=decision.level.level, human_decision=said)  # fmt: skip
            released = False
        elif released:
            _move(action, S.APPROVED, reasons=reasons, params=action.params, human_decision=said)
            usage.spend_record(agent_id=action.agent_id, amount=decision.amount, at=now)
        else:
            reasons += decision.reasons
            _move(action, S.DENIED, reasons=reasons, params=action.params, finished_at=now,
                  human_decision=said)  # fmt: skip
        refused = None if released or decision.shadow else next(iter(decision.reasons), None)
        audit.append(
            kind="action_released" if released else "action_outcome",
            actor="gate",
            agent_id=action.agent_id,
            action_id=action.pk,
            payload={
                "status": action.status,
                "outcome": None,
                "error": refused,
                "decision": decision.as_dict(),
                "approval": code,
            },
        )
        if released:
            dispatch_on_commit(action.pk)
        else:
            signals.action_settled.send(sender=ActionRequest, action=action)
    return action


def action_params_narrow(*, action_id, params: dict) -> None:
    """An approver changed a waiting action's parameters (approve with changes): what runs,
    if it is released, is what they approved."""
    action = _locked(action_id)
    if action is None or action.status != S.PENDING_APPROVAL:
        raise IllegalTransition(current=getattr(action, "status", "gone"), target="narrowed")
    # Values the approver saw masked and left as they were stay what the agent sent.
    params = masking.restore(action.operation, params, action.params)
    action.params = validate_params(operation=action.operation, params=params)
    action.human_decision = HumanDecision.CHANGED
    action.save(update_fields=["params", "human_decision"])


def action_reject(*, action_id, code: str, message: str, actor: str = "system"):
    """People said no to a waiting action, or nobody answered in time (``code`` says
    which): it is denied. One no longer waiting is left as it is."""
    with transaction.atomic(savepoint=False):
        action = _locked(action_id)
        if action is None or action.status != S.PENDING_APPROVAL:
            return action
        note = gate.reason_entry(code, message)
        said = HumanDecision.REJECTED if code in PEOPLE_REJECTED else action.human_decision
        _move(action, S.DENIED, reasons=[*action.reasons, note], finished_at=timezone.now(),
              human_decision=said)  # fmt: skip
        _outcome_recorded(action, actor, error=note)
    return action


def action_cancel(*, action: ActionRequest, code: str, message: str, actor: str = "system"):
    """Stop an action that has not started: waiting for people, or approved and not yet
    taken by a worker. ``action`` must be locked by the caller (``actions_cancel_waiting``
    locks them). Returns whether it was cancelled (an action already executing finishes)."""
    if action.status not in (S.PENDING_APPROVAL, S.APPROVED) or action.started_at is not None:
        return False
    note = gate.reason_entry(code, message)
    _move(action, S.CANCELLED, reasons=[*action.reasons, note], finished_at=timezone.now())
    _outcome_recorded(action, actor, error=note)
    return True


def actions_cancel_waiting(*, code: str, message: str, actor: str = "system", **where) -> list:
    """Cancel every action matching ``where`` (``agent=``, ``pk__in=``) that waits for people
    or for a worker, in the caller's transaction. Returns their ids."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("cancel actions inside the transaction of what stops them")
    waiting = (
        ActionRequest.objects.select_for_update(of=("self",))
        .filter(**where, status__in=[S.PENDING_APPROVAL, S.APPROVED], started_at__isnull=True)
        .order_by("created_at")
    )
    return [
        str(action.pk)
        for action in waiting
        if action_cancel(action=action, code=code, message=message, actor=actor)
    ]


# --- execution ------------------------------------------------------------------------------


def action_execute(*, action_id, recover: bool = False) -> ActionRequest | None:
    """Run an approved action through its connector, once.

    Safe to call again for the same action (a redelivered task): a finished action is left
    alone, and one already executing is left to the worker executing it, unless that started
    longer than ``AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS`` ago, its worker stopped beating
    (``autonomy.liveness``), or the caller knows its worker died (``recover``); then the
    connector's idempotency key (the action id) keeps it to one side effect. An agent stopped
    since the decision (paused, quarantined, killed, an emergency stop) has its approved
    action cancelled instead: a stop takes effect at once.
    """
    with transaction.atomic():
        action = _locked(action_id, "agent__service_user")
        if action is None or action.status not in (S.APPROVED, S.EXECUTING):
            return action
        if action.status == S.EXECUTING and not recover:
            lease = timedelta(seconds=settings.AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS)
            young = action.started_at and action.started_at > timezone.now() - lease
            lost = action.worker and action.worker not in services.workers_alive()
            if young and not lost:
                return action  # another delivery is executing it right now
        agent = action.agent
        if action.status == S.APPROVED and not agent.is_active:
            code = gate.STATUS_CODES[agent.status]
            action_cancel(
                action=action,
                code=code,
                message=f"{agent} is {agent.status}; the approved action was not run.",
                actor="worker",
            )
            return action
        _move(
            action,
            S.EXECUTING,
            started_at=action.started_at or timezone.now(),
            attempts=action.attempts + 1,
            worker=liveness.current_worker(),
        )

    return _perform_and_settle(action)


def _perform_and_settle(action: ActionRequest) -> ActionRequest:
    """Perform a claimed action and record its outcome. When the database drops this
    worker's connection meanwhile, reconnect and record it (or, when the call itself failed
    on our database, call again: the connector's idempotency key, the action id, keeps that
    to one side effect) for up to ``AUTONOMY_ACTION_RECONNECT_SECONDS``. Raising instead
    left the action ``executing`` under a live worker, so nobody took it back before its
    lease ran out, minutes later."""
    deadline = time.monotonic() + settings.AUTONOMY_ACTION_RECONNECT_SECONDS
    performed, pause = False, 0.05
    while True:
        try:
            if not performed:
                action = action_perform(action_id=action.pk, action=action)
                performed = True
            with transaction.atomic():
                return action_settle(action=action)
        except (OperationalError, InterfaceError):
            if transaction.get_connection().in_atomic_block or time.monotonic() > deadline:
                raise  # a caller's transaction is gone with it; or the database stays away
            log.warning("action %s: database connection lost; reconnecting", action.pk)
            close_old_connections()
            time.sleep(pause)
            pause = min(pause * 2, 1.0)


@tracing.traced_execute
def action_perform(*, action_id, action: ActionRequest) -> ActionRequest:
    """The connector call of an action claimed as executing, outside any transaction (it
    may take seconds). The result is set on ``action`` in memory; ``action_settle``
    records it. ``action_id`` names the span."""
    try:
        result = connectors.call(
            operation=action.operation, params=action.params, idempotency_key=str(action.pk)
        )
        action.status, action.outcome, action.error = ActionStatus.SUCCEEDED, result, None
    except connectors.ConnectorError as exc:
        action.status, action.outcome = ActionStatus.FAILED, None
        action.error = {"message": str(exc)}
    return action


def action_settle(*, action: ActionRequest) -> ActionRequest:
    """Record what ``action_perform`` set on ``action``, inside the caller's transaction:
    only on an action still executing (a stop may have cancelled it meanwhile), with one
    conditional UPDATE that also takes the row's lock, and its audit record. Returns the
    action as it now stands."""
    if action.status not in TRANSITIONS[S.EXECUTING]:
        raise IllegalTransition(current=S.EXECUTING, target=action.status)
    action.finished_at = timezone.now()
    settled = ActionRequest.objects.filter(pk=action.pk, status=S.EXECUTING).update(
        status=action.status,
        outcome=action.outcome,
        error=action.error,
        finished_at=action.finished_at,
    )
    if not settled:
        return ActionRequest.objects.select_related("operation__connector").get(pk=action.pk)
    _outcome_recorded(action, "worker", error=action.error)
    if action.status == S.SUCCEEDED:
        results.result_check(action=action)
    return action


def actions_redispatch(*, now=None, broker_returned: bool = False) -> int:
    """Send again every approved action that has not started ``AUTONOMY_ACTION_REDISPATCH_
    SECONDS`` after its decision: its publish was lost (a crash, a broker outage) or its task
    was. And every executing action whose worker died in the middle, and its message with
    it: its worker stopped beating (``autonomy.liveness``), or it names none and is still
    executing ``AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS`` after it started, per execution
    (``selectors.actions_stalled``). ``action_execute`` runs it again, and the connector's
    idempotency key (the action id) keeps it to one side effect. Run by Celery beat;
    harmless when the first delivery still arrives, because ``action_execute`` runs an
    action once. ``broker_returned``: a worker reconnected to a broker that may have lost
    its messages (a restart): every approved action not started yet is sent again at once,
    instead of ``AUTONOMY_ACTION_REDISPATCH_SECONDS`` on. Returns how many were sent."""
    from autonomy import tasks

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.AUTONOMY_ACTION_REDISPATCH_SECONDS)
    lease = timedelta(seconds=settings.AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS)
    if broker_returned:
        not_started = selectors.actions_not_started(decided_before=now, limit=100_000)
    else:
        not_started = selectors.actions_not_started(decided_before=cutoff)
    stalled = selectors.actions_stalled(now=now, lease=lease, alive=services.workers_alive(now=now))
    services.workers_prune(now=now)
    for action_id in [*not_started, *stalled]:
        tasks.action_execute.delay(str(action_id))
    if not_started or stalled:
        log.warning(
            "re-dispatched %d approved actions that had not started and %d whose execution "
            "stalled", len(not_started), len(stalled),
        )  # fmt: skip
    return len(not_started) + len(stalled)


def action_simulate(
    *,
    agent,
    operation_key: str,
    params: dict,
    draft_text=None,
    replaces=None,
    approval=None,
    by_agent: bool = False,
    template_key: str | None = None,
):
    """The gate's answer for a hypothetical request, with a workflow step's ``approval`` ask
    when it is one. Nothing is recorded or executed; a standing approval's daily bound is
    read, not counted.

    ``by_agent``: the agent asks about itself. It learns nothing of an operation it is not
    granted: the answer is the very one a name that does not exist gets (no schema, no
    policy names, no risk), before its parameters are even looked at, so simulate is no
    oracle of the registry. People who may read policies see the gate's whole answer."""
    operation = resolve_operation(key=operation_key)
    if by_agent and not grants.is_granted(operation=operation, agent=agent):
        raise _operation_unknown(operation_key)
    params = validate_params(operation=operation, params=params)
    decision = gate.decide(
        agent=agent,
        operation=operation,
        params=params,
        draft_text=draft_text,
        draft_replaces=replaces,
        approval=approval,
        template_key=template_key,
    )
    if decision.standing:
        # What a request would find now: a standing approval with room left today, or none.
        decision.standing_used(
            standing_services.standing_with_room(candidates=decision.standing, at=timezone.now())
        )
    return operation, decision
