"""Use cases of the kernel: ask for an action, execute it, grant operations.

``action_request`` is the one write path of the gate: validate, decide, record the action
and its audit record in one transaction, and hand allowed work to a worker after commit.
"""

import functools
import hashlib
import json
import logging
from datetime import timedelta

import jsonschema
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.utils import timezone
from guardian.shortcuts import assign_perm, remove_perm

from autonomy import audit, connectors, dispatch, gate, liveness, rows, selectors, signals, usage
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    Connector,
    Operation,
    Verdict,
    WorkerBeat,
)
from autonomy.observability import rollup, tracing
from autonomy.observability.request_id import current as current_request_id
from autonomy.policy import engine as policy_engine

log = logging.getLogger(__name__)

STATUS_FOR_VERDICT = {
    Verdict.ALLOW: ActionStatus.APPROVED,
    Verdict.DENY: ActionStatus.DENIED,
    Verdict.NEEDS_APPROVAL: ActionStatus.PENDING_APPROVAL,
}


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


def resolve_operation(*, key: str, version: int | None = None) -> Operation:
    operation = selectors.operation_by_key(key=key or "", version=version)
    if operation is None:
        raise DomainError(
            ErrorCode.OPERATION_UNKNOWN,
            f"There is no operation {key!r}. Operations are named <connector>.<operation>.",
            {"operation": key},
        )
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
    approval_gate: str = "",
    dispatch: bool = True,
    operation: Operation | None = None,
    claim: bool = False,
    fresh_key: bool = False,
) -> tuple[ActionRequest, bool]:
    """Decide and record one action. Returns (action, replayed).

    The same idempotency key with the same request returns the first action; with a
    different request it is refused, so a retry can never become a second, other action.
    ``approval_gate`` (a reason) sends an action the gate allows to people anyway, as a
    workflow's approval step asks; it never turns a denial into anything else. With
    ``dispatch=False`` the caller executes an allowed action itself (a workflow step does,
    on the worker it already runs on); with ``claim`` too, an allowed action is recorded as
    executing straight away, in the caller's transaction, for the caller to run now
    (``action_perform``, then ``action_settle``). A caller that read ``operation`` (with its
    connector) in its own transaction passes it, and it is not looked up again (a workflow
    step does). ``fresh_key``: the caller knows that no action has ``idempotency_key`` yet
    (a workflow step's names its attempt, counted under the step's lock), so the probe for
    a replay is skipped; a clash would still be answered with the action that has it.
    """
    # The operation and the policies a request is decided on come from one registry state.
    # A request starts from a guess of the version, and the gate's one read confirms it (a
    # round trip saved on every request); when the store moved, the operation is resolved
    # again on the version that read saw. An agent's request guesses the version the
    # operation cache holds; a caller that read the operation itself (a workflow step), the
    # version the policies were last compiled for.
    if operation is None:
        guess = selectors.cached_version()
    else:
        guess = policy_engine.compiled_version()
    version = guess if guess is not None else policy_engine.store_version()
    if operation is None or operation.key != operation_key:
        operation = resolve_operation(key=operation_key, version=version)
    params = validate_params(operation=operation, params=params)
    request_hash = hashlib.sha256(
        _canonical({"op": operation.key, "params": params, "reason": reason}).encode()
    ).hexdigest()
    if idempotency_key and not fresh_key:
        existing = _replay(agent=agent, key=idempotency_key, request_hash=request_hash)
        if existing is not None:
            return existing, True

    now = timezone.now()
    try:
        decision = gate.decide(
            agent=agent, operation=operation, params=params, credential=credential,
            version=version, confirm_version=guess is not None,
        )  # fmt: skip
    except gate.VersionMoved as moved:
        version = moved.version
        operation = resolve_operation(key=operation_key, version=version)
        params = validate_params(operation=operation, params=params)
        decision = gate.decide(
            agent=agent, operation=operation, params=params, credential=credential,
            version=version,
        )  # fmt: skip
    if approval_gate and decision.verdict == Verdict.ALLOW:
        decision.verdict = Verdict.NEEDS_APPROVAL
        decision.reasons.append(
            {"code": str(ErrorCode.APPROVAL_GATE), "message": approval_gate, "details": {}}
        )
    # No savepoint (one round trip each way, on every step of every workflow): a request
    # that loses a race for its idempotency key inserts nothing and answers with the
    # winner's action.
    with transaction.atomic(savepoint=False):
        action = ActionRequest.new(
            agent=agent,
            credential=credential,
            operation=operation,
            params=params,
            reason=reason,
            idempotency_key=idempotency_key or None,
            request_hash=request_hash,
            verdict=decision.verdict,
            status=STATUS_FOR_VERDICT[decision.verdict],
            risk_score=decision.risk_score,
            risk_factors=decision.risk_factors,
            reasons=decision.reasons,
            policy_ids=decision.policies,
            amount=decision.amount,
            request_id=current_request_id(),
            trace_id=tracing.current_trace_id(),
            created_at=now,
            decided_at=timezone.now(),
        )
        if claim and action.status == ActionStatus.APPROVED and not dispatch:
            # Its caller runs it now: executing from the start, one write fewer.
            action.status, action.started_at, action.attempts = (
                ActionStatus.EXECUTING, action.decided_at, 1
            )  # fmt: skip
        # No signal listens to ActionRequest saves.
        if not rows.insert(action, unless_taken=bool(idempotency_key)):
            # A concurrent request with the same key committed first: answer with its action.
            existing = _replay(agent=agent, key=idempotency_key, request_hash=request_hash)
            if existing is None:
                raise IntegrityError(f"action {action.pk} clashed with a row that is gone")
            return existing, True
        rollup.rollup_record(action=action)
        usage.usage_record(action=action)
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
        if action.status == ActionStatus.APPROVED and dispatch:
            dispatch_on_commit(action.pk)
        elif action.status == ActionStatus.PENDING_APPROVAL:
            from approvals import services as approvals

            approvals.approval_open(action=action)
    return action, False


_ACTION_PK = ActionRequest._meta.pk


@functools.cache
def _replay_sql(alias: str) -> str:
    quote = connections[alias].ops.quote_name
    meta = ActionRequest._meta
    column = {name: quote(meta.get_field(name).column) for name in
              ("id", "agent", "idempotency_key", "request_hash")}  # fmt: skip
    return (
        f"SELECT {column['id']} AS pk, {column['request_hash']} AS request_hash"
        f" FROM {quote(meta.db_table)} WHERE {column['agent']} = %(agent)s"
        f" AND {column['idempotency_key']} = %(key)s"
    )


def _replay(*, agent, key: str, request_hash: str) -> ActionRequest | None:
    # A narrow probe first, in SQL built once: a key is usually new (every workflow step's
    # is), and a miss then costs one index lookup, not the ORM's query building (which cost
    # ten times the lookup) nor the joined row.
    connection = transaction.get_connection()
    with rows.cursor(connection) as cursor:
        cursor.execute(
            _replay_sql(connection.alias),
            {"agent": selectors.AGENT_KEY.get_db_prep_value(agent.pk, connection), "key": key},
        )
        found = cursor.fetchone()
    if found is None:
        return None
    found = (_ACTION_PK.to_python(found[0]), found[1])
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


def actions_redispatch(*, now=None) -> int:
    """Send again every approved action that has not started ``AUTONOMY_ACTION_REDISPATCH_
    SECONDS`` after its decision: its publish was lost (a crash, a broker outage) or its task
    was. And every executing action whose worker died in the middle, and its message with
    it: its worker stopped beating (``autonomy.liveness``), or it names none and is still
    executing ``AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS`` after it started, per execution
    (``selectors.actions_stalled``). ``action_execute`` runs it again, and the connector's
    idempotency key (the action id) keeps it to one side effect. Run by Celery beat;
    harmless when the first delivery still arrives, because ``action_execute`` runs an
    action once. Returns how many were sent."""
    from autonomy import tasks

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.AUTONOMY_ACTION_REDISPATCH_SECONDS)
    lease = timedelta(seconds=settings.AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS)
    not_started = selectors.actions_not_started(decided_before=cutoff)
    stalled = selectors.actions_stalled(now=now, lease=lease, alive=workers_alive(now=now))
    workers_prune(now=now)
    for action_id in [*not_started, *stalled]:
        tasks.action_execute.delay(str(action_id))
    if not_started or stalled:
        log.warning(
            "re-dispatched %d approved actions that had not started and %d whose execution "
            "stalled", len(not_started), len(stalled),
        )  # fmt: skip
    return len(not_started) + len(stalled)


# --- worker liveness (autonomy.liveness) ----------------------------------------------------


def worker_beat(*, name: str, now=None) -> None:
    """A worker process says it is alive."""
    now = now or timezone.now()
    if not WorkerBeat.objects.filter(pk=name).update(beat_at=now):
        WorkerBeat.objects.get_or_create(name=name, defaults={"started_at": now, "beat_at": now})


def worker_gone(*, name: str) -> None:
    """A worker process stopped cleanly: nothing of its own runs any more."""
    WorkerBeat.objects.filter(pk=name).delete()


def _lost_before(now=None):
    """A worker whose last beat is not after this is lost."""
    lost = timedelta(seconds=settings.AUTONOMY_WORKER_LOST_SECONDS)
    return (now or timezone.now()) - lost


def worker_alive(*, beat_at, now=None) -> bool:
    """Whether a worker whose last beat was at ``beat_at`` counts as alive."""
    return beat_at > _lost_before(now)


def workers_alive(*, now=None) -> set[str]:
    """The workers that beat within ``AUTONOMY_WORKER_LOST_SECONDS``."""
    return set(selectors.live_workers(since=_lost_before(now)))


def workers_prune(*, now=None) -> int:
    """Delete the rows of workers silent for longer than ``AUTONOMY_WORKER_LOST_SECONDS``:
    they count as lost with or without their row."""
    return WorkerBeat.objects.filter(beat_at__lte=_lost_before(now)).delete()[0]


def action_execute(*, action_id, recover: bool = False) -> ActionRequest | None:
    """Run an approved action through its connector, once.

    Safe to call again for the same action (a redelivered task): a finished action is left
    alone, and one already executing is left to the worker executing it, unless that started
    longer than ``AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS`` ago, its worker stopped beating
    (``autonomy.liveness``), or the caller knows its worker died (``recover``); then the
    connector's idempotency key (the action id) keeps it to one
    side effect. An agent stopped since the decision (paused, quarantined, killed, an
    emergency stop) has its approved action cancelled instead: a stop takes effect at once.
    """
    with transaction.atomic():
        try:  # get(), not first(): no ORDER BY (the model orders by -created_at) to build
            action = (
                ActionRequest.objects.select_for_update(of=("self",))
                .select_related("operation__connector", "agent__service_user")
                .get(pk=action_id)
            )
        except ActionRequest.DoesNotExist:
            action = None
        if action is None or action.status not in (ActionStatus.APPROVED, ActionStatus.EXECUTING):
            return action
        if action.status == ActionStatus.EXECUTING and not recover:
            lease = timedelta(seconds=settings.AUTONOMY_ACTION_EXECUTION_LEASE_SECONDS)
            young = action.started_at and action.started_at > timezone.now() - lease
            lost = action.worker and action.worker not in workers_alive()
            if young and not lost:
                return action  # another delivery is executing it right now
        if action.status == ActionStatus.APPROVED and not action.agent.is_active:
            return _cancel_for_stopped_agent(action)
        action.status = ActionStatus.EXECUTING
        action.started_at = action.started_at or timezone.now()
        action.attempts += 1
        action.worker = liveness.current_worker()
        action.save(update_fields=["status", "started_at", "attempts", "worker"])

    action = action_perform(action_id=action.pk, action=action)
    with transaction.atomic():
        return action_settle(action=action)


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
    status, outcome, error = action.status, action.outcome, action.error
    action.finished_at = timezone.now()
    settled = rows.update_if(
        action, ["status", "outcome", "error", "finished_at"], status=ActionStatus.EXECUTING
    )
    if not settled:
        return ActionRequest.objects.select_related("operation__connector").get(pk=action.pk)
    audit.append(
        kind="action_outcome",
        actor="worker",
        agent_id=action.agent_id,
        action_id=action.pk,
        payload={"status": status, "outcome": outcome, "error": error},
    )
    signals.action_settled.send(sender=ActionRequest, action=action)
    return action


def _cancel_for_stopped_agent(action: ActionRequest) -> ActionRequest:
    action.status = ActionStatus.CANCELLED
    action.finished_at = timezone.now()
    action.reasons = [
        *action.reasons,
        {
            "code": str(gate.STATUS_CODES.get(action.agent.status, ErrorCode.AGENT_PAUSED)),
            "message": f"{action.agent} is {action.agent.status}; the approved action was not run.",
            "details": {},
        },
    ]
    action.save(update_fields=["status", "finished_at", "reasons"])
    audit.append(
        kind="action_outcome",
        actor="worker",
        agent_id=action.agent_id,
        action_id=action.pk,
        payload={"status": action.status, "outcome": None, "error": action.reasons[-1]},
    )
    signals.action_settled.send(sender=ActionRequest, action=action)
    return action


def action_simulate(*, agent, operation_key: str, params: dict, draft_text=None, replaces=None):
    """The gate's answer for a hypothetical request. Nothing is recorded or executed."""
    operation = resolve_operation(key=operation_key)
    params = validate_params(operation=operation, params=params)
    return operation, gate.decide(
        agent=agent,
        operation=operation,
        params=params,
        draft_text=draft_text,
        draft_replaces=replaces,
    )


# --- grants ---------------------------------------------------------------------------------


def _principal(grantee):
    """Agents are granted through their service user, roles through their group."""
    from agents.models import Agent, Role

    if isinstance(grantee, Agent):
        return grantee.service_user
    if isinstance(grantee, Role):
        return grantee.group
    raise TypeError("grant to an Agent or a Role")


def grant(*, target: Operation | Connector, to, by=None) -> None:
    perm = "execute_operation" if isinstance(target, Operation) else "execute_connector"
    with transaction.atomic():
        assign_perm(f"autonomy.{perm}", _principal(to), target)
        audit.append(
            kind="grant",
            actor=getattr(by, "username", ""),
            payload={"target": str(target), "to": str(to), "perm": perm, "granted": True},
        )


def revoke_grant(*, target: Operation | Connector, to, by=None) -> None:
    perm = "execute_operation" if isinstance(target, Operation) else "execute_connector"
    with transaction.atomic():
        remove_perm(f"autonomy.{perm}", _principal(to), target)
        audit.append(
            kind="grant",
            actor=getattr(by, "username", ""),
            payload={"target": str(target), "to": str(to), "perm": perm, "granted": False},
        )
