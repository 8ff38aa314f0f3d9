"""Coordination between agents: claims on resource keys and run-scoped messages.

Claims never block, so no agent can deadlock another: asking for a held key gives a
``waiting`` claim that is promoted (highest priority, then oldest) when the holder releases
or its lease runs out. A holder is never preempted; a higher-priority waiter only sets
``yield_requested``, which the holder sees on its next renew, acquire or read.

The database enforces one holder per key (a partial unique index), so two requests racing
for a free key cannot both win: the loser's insert fails and it retries as a waiter. Locks
are always taken holder row first, then waiter rows, so no two transactions wait on each
other in opposite orders.

Claims are scoped by business unit: waiting for a key, and so asking its holder to yield,
happens only among agents of the holder's unit. An agent of another unit asking for a held
key is refused at once (409 ``claim_held``), whatever its priority, so no unit's agent can
push another unit's agent off its work. A free key goes to whoever asks first.

Who takes part in a run (and so may send and read its messages): the assignee of one of its
step runs, or the agent of an open claim on it. A claim may only name a run its agent is
assigned a step of, so nobody joins a run by claiming a key "for" it.
"""

import json
import re
from datetime import datetime, timedelta

from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from agents.models import Agent
from autonomy import audit
from autonomy.errors import DomainError, ErrorCode
from workflows.models import (
    RUN_FINISHED,
    Claim,
    ClaimStatus,
    Message,
    Run,
    RunEvent,
    StepRun,
)
from workflows.services import require_active

RESOURCE_KEY = re.compile(r"^[a-z0-9_.-]+(:[A-Za-z0-9_.-]+)+$")
RESOURCE_KEY_MAX = 200
LEASE_SECONDS_MAX = 24 * 3600
PRIORITY_RANGE = (-1000, 1000)
ACQUIRE_ATTEMPTS = 8
MESSAGE_BODY_MAX_BYTES = 16 * 1024
EVENT_BODY_MAX_BYTES = 1024
MESSAGES_PAGE = 100
OPEN = (ClaimStatus.HELD, ClaimStatus.WAITING)


# --- helpers --------------------------------------------------------------------------------


def _event(claims: list[Claim], kind: str, message: str, *, actor: str = "", **data) -> None:
    """One timeline event on each distinct run the claims belong to."""
    for run_id in dict.fromkeys(c.run_id for c in claims if c.run_id):
        RunEvent.objects.create(
            run_id=run_id, kind=kind, actor=actor, message=message[:500], data=data
        )


def _summary(claim: Claim) -> dict:
    return {
        "claim_id": claim.pk,
        "resource_key": claim.resource_key,
        "agent": claim.agent.slug,
        "priority": claim.priority,
        "run_id": str(claim.run_id) if claim.run_id else None,
    }


def _validate(*, resource_key: str, priority: int, lease_seconds: int) -> None:
    problems = {}
    if not isinstance(resource_key, str) or len(resource_key) > RESOURCE_KEY_MAX:
        problems["resource_key"] = f"At most {RESOURCE_KEY_MAX} characters."
    elif not RESOURCE_KEY.match(resource_key):
        problems["resource_key"] = (
            "Use <kind>:<id>[:<id>...], e.g. 'erp.invoice:INV-1' "
            "(kind: a-z 0-9 _ . -; ids: letters, digits, _ . -)."
        )
    low, high = PRIORITY_RANGE
    if isinstance(priority, bool) or not isinstance(priority, int) or not low <= priority <= high:
        problems["priority"] = f"An integer from {low} to {high}."
    if (
        isinstance(lease_seconds, bool)
        or not isinstance(lease_seconds, int)
        or not 1 <= lease_seconds <= LEASE_SECONDS_MAX
    ):
        problems["lease_seconds"] = f"An integer from 1 to {LEASE_SECONDS_MAX}."
    if problems:
        raise DomainError(ErrorCode.VALIDATION_FAILED, "The claim is not valid.", problems)


def _not_held(claim: Claim, why: str) -> DomainError:
    return DomainError(
        ErrorCode.CLAIM_NOT_HELD,
        why,
        {"claim": claim.pk, "resource_key": claim.resource_key, "status": claim.status},
        409,
    )


def _lapsed(claim: Claim, now: datetime) -> bool:
    return claim.lease_until is not None and claim.lease_until <= now


def _waiters(resource_key: str) -> list[Claim]:
    """Every waiter of the key, best first, locked (after the holder row, never before)."""
    return list(
        Claim.objects.select_for_update(of=("self",))
        .select_related("agent")
        .filter(resource_key=resource_key, status=ClaimStatus.WAITING)
        .order_by("-priority", "created_at", "id")
    )


def _promote(resource_key: str, *, now: datetime, reason: str) -> Claim | None:
    """Give the key to its best waiter, with its lease starting now. Call with no holder."""
    waiters = _waiters(resource_key)
    if not waiters:
        return None
    claim = waiters[0]
    claim.status = ClaimStatus.HELD
    claim.acquired_at = now
    claim.lease_until = now + timedelta(seconds=claim.lease_seconds)
    claim.yield_requested = False  # the best waiter: nobody left outranks it
    claim.save(update_fields=["status", "acquired_at", "lease_until", "yield_requested"])
    _event(
        [claim],
        "claim_granted",
        f"{claim.agent.slug} now holds {resource_key} ({reason}).",
        actor=claim.agent.slug,
        reason=reason,
        **_summary(claim),
    )
    audit.append(
        kind="claim_granted",
        actor=claim.agent.slug,
        agent_id=claim.agent_id,
        payload={**_summary(claim), "reason": reason},
    )
    return claim


def _end_hold(claim: Claim, *, status: str, now: datetime) -> Claim | None:
    """End a held claim (locked by the caller) and promote the next waiter."""
    claim.status = status
    claim.ended_at = now
    claim.save(update_fields=["status", "ended_at"])
    if status == ClaimStatus.EXPIRED:
        _event(
            [claim],
            "claim_expired",
            f"{claim.agent.slug}'s lease on {claim.resource_key} ran out.",
            actor="system",
            lease_until=claim.lease_until.isoformat() if claim.lease_until else None,
            **_summary(claim),
        )
        audit.append(
            kind="claim_expired", actor="system", agent_id=claim.agent_id, payload=_summary(claim)
        )
    reason = "expiry take-over" if status == ClaimStatus.EXPIRED else "released"
    return _promote(claim.resource_key, now=now, reason=reason)


def _request_yield(holder: Claim, requester: Claim) -> None:
    if requester.priority <= holder.priority or holder.yield_requested:
        return
    holder.yield_requested = True
    holder.save(update_fields=["yield_requested"])
    _event(
        [holder, requester],
        "claim_yield_requested",
        f"{requester.agent.slug} (priority {requester.priority}) asks {holder.agent.slug} "
        f"(priority {holder.priority}) to yield {holder.resource_key}.",
        actor=requester.agent.slug,
        holder=_summary(holder),
        requester=_summary(requester),
    )


def _may_queue(agent: Agent, holder: Claim) -> bool:
    """THE RULE of the claims' scope: an agent waits for (and may ask to yield) a key held
    by an agent of its own business unit only."""
    return agent.business_unit_id == holder.agent.business_unit_id


def _locked_holder(resource_key: str) -> Claim | None:
    return (
        Claim.objects.select_for_update(of=("self",))
        .select_related("agent")
        .filter(resource_key=resource_key, status=ClaimStatus.HELD)
        .first()
    )


def _own(agent: Agent, claim_id) -> Claim:
    claim = Claim.objects.select_related("agent").filter(pk=claim_id).first()
    if claim is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such claim.", {"claim": claim_id}, 404)
    if claim.agent_id != agent.pk:
        raise DomainError(
            ErrorCode.CLAIM_NOT_HELD, "This claim is not yours.", {"claim": claim.pk}, 409
        )
    return claim


# --- who takes part in a run ----------------------------------------------------------------


def is_assigned(*, agent: Agent, run: Run) -> bool:
    return StepRun.objects.filter(run=run, assignee=agent).exists()


def takes_part(*, agent: Agent, run: Run) -> bool:
    """Assigned a step of the run, or an open claim on it."""
    return (
        is_assigned(agent=agent, run=run)
        or Claim.objects.filter(run=run, agent=agent, status__in=OPEN).exists()
    )


def _require_part(agent: Agent, run: Run, *, who: str = "You") -> None:
    if not takes_part(agent=agent, run=run):
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            f"{who} take{'s' if who != 'You' else ''} no part in this run.",
            {"run": str(run.pk), "agent": agent.slug},
            403,
        )


def run_get(*, run_id) -> Run:
    run = Run.objects.filter(pk=run_id).first()
    if run is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such run.", {"run": str(run_id)}, 404)
    return run


def _require_running(run: Run) -> None:
    """Read the status afresh: the caller's run object may predate a cancel."""
    status = Run.objects.values_list("status", flat=True).get(pk=run.pk)
    if status in RUN_FINISHED:
        raise DomainError(
            ErrorCode.RUN_NOT_ACTIVE, f"The run is {status}.", {"status": status}, 409
        )


# --- claims ---------------------------------------------------------------------------------


def claim_acquire(
    *,
    agent: Agent,
    resource_key: str,
    priority: int = 0,
    lease_seconds: int = 60,
    run: Run | None = None,
) -> Claim:
    """Hold the key if it is free, else wait for it; never blocks.

    Asking again returns the agent's open claim unchanged (a held lease is extended only by
    ``claim_renew``). A request with a higher priority than the holder's asks it to yield.
    A key held by an agent of another business unit is refused (``claim_held``, 409): no
    waiting, no yield asked (``_may_queue``).
    """
    _validate(resource_key=resource_key, priority=priority, lease_seconds=lease_seconds)
    require_active(agent)
    if run is not None:
        _require_running(run)
        if not is_assigned(agent=agent, run=run):
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "A claim can only name a run you are assigned a step of.",
                {"run": str(run.pk), "agent": agent.slug},
                403,
            )
    for attempt in range(ACQUIRE_ATTEMPTS):
        try:
            with transaction.atomic():
                return _try_acquire(
                    agent=agent,
                    resource_key=resource_key,
                    priority=priority,
                    lease_seconds=lease_seconds,
                    run=run,
                    last=attempt == ACQUIRE_ATTEMPTS - 1,
                )
        except (IntegrityError, _LookAgain):
            # A concurrent request made a holder (or this agent's claim) first, or a holder
            # was made after this attempt's snapshot. Everything of the attempt is undone.
            continue
    raise DomainError(
        ErrorCode.CONFLICT,
        "The resource is too contended right now; ask again.",
        {"resource_key": resource_key},
        409,
    )


class _LookAgain(Exception):
    """Open claims but no holder in sight: a holder was most likely made after this
    attempt's locking read. Looking again (a new snapshot) sees and locks it."""


def _try_acquire(*, agent, resource_key, priority, lease_seconds, run, last: bool) -> Claim:
    """One attempt inside a transaction; IntegrityError when a concurrent request won.

    It never promotes a waiter of a key it sees no holder of: that waiter row may be locked
    by a release promoting it, and waiting for it here would invert the lock order. Waiters
    left without a holder (their holder's agent was deleted) are healed by the sweep.
    """
    holder = _locked_holder(resource_key)
    now = timezone.now()
    if holder is not None and _lapsed(holder, now):
        holder = _end_hold(holder, status=ClaimStatus.EXPIRED, now=now)
    # A fresh statement: it also sees a holder made after the locking read's snapshot.
    queued = holder is not None or (
        Claim.objects.filter(resource_key=resource_key, status__in=OPEN).exists()
    )
    if holder is None and queued and not last:
        raise _LookAgain
    mine = (
        Claim.objects.select_related("agent")
        .filter(resource_key=resource_key, agent=agent, status__in=OPEN)
        .first()
    )
    if mine is not None:
        return mine
    if holder is not None and not _may_queue(agent, holder):
        raise DomainError(
            ErrorCode.CLAIM_HELD,
            "The resource is held by an agent of another business unit.",
            {"resource_key": resource_key},
            409,
        )
    claim = Claim(
        resource_key=resource_key,
        agent=agent,
        run=run,
        priority=priority,
        lease_seconds=lease_seconds,
    )
    claim.status = ClaimStatus.WAITING if queued else ClaimStatus.HELD
    claim.save()
    if not queued:
        # The lease starts once the insert got through the one-holder index, which may have
        # waited for a concurrent release to commit: read the clock after it, not before.
        claim.acquired_at = timezone.now()
        claim.lease_until = claim.acquired_at + timedelta(seconds=lease_seconds)
        claim.save(update_fields=["acquired_at", "lease_until"])
    if holder is not None:
        _event(
            [claim, holder],
            "claim_conflict",
            f"{agent.slug} waits for {resource_key}, held by {holder.agent.slug}.",
            actor=agent.slug,
            holder=_summary(holder),
            waiter=_summary(claim),
        )
        _request_yield(holder, claim)
    return claim


def claim_get(*, agent: Agent, claim_id) -> Claim:
    """The agent's own claim; anybody else's is not found."""
    claim = Claim.objects.select_related("agent").filter(pk=claim_id, agent=agent).first()
    if claim is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such claim.", {"claim": claim_id}, 404)
    return claim


def claims_of(*, agent: Agent):
    return Claim.objects.select_related("agent").filter(agent=agent).order_by("-created_at")


def claim_release(*, agent: Agent, claim_id) -> Claim:
    """Give the key back (the best waiter gets it) or stop waiting. Repeating is harmless."""
    claim = _own(agent, claim_id)
    with transaction.atomic():
        claim = (
            Claim.objects.select_for_update(of=("self",)).select_related("agent").get(pk=claim.pk)
        )
        now = timezone.now()
        if claim.status == ClaimStatus.WAITING:
            claim.status = ClaimStatus.CANCELLED
            claim.ended_at = now
            claim.save(update_fields=["status", "ended_at"])
        elif claim.status == ClaimStatus.HELD:
            _end_hold(claim, status=ClaimStatus.RELEASED, now=now)
        elif claim.status == ClaimStatus.EXPIRED:
            raise _not_held(claim, "The lease ran out before the release.")
    if claim.status == ClaimStatus.CANCELLED:
        _withdraw_yield(claim.resource_key)  # after the commit: never lock holder after waiter
    return claim


def _withdraw_yield(resource_key: str) -> None:
    """A waiter left: the holder need not yield unless someone above it still waits.

    Its own transaction, run after the waiter's: the holder row is locked first (the one lock
    order), and the waiters are read after that lock, so a new waiter is never missed.
    """
    with transaction.atomic():
        holder = _locked_holder(resource_key)
        if holder is None or not holder.yield_requested:
            return
        above = Claim.objects.filter(
            resource_key=resource_key, status=ClaimStatus.WAITING, priority__gt=holder.priority
        )
        if not above.exists():
            holder.yield_requested = False
            holder.save(update_fields=["yield_requested"])


def claims_release_all(*, agent: Agent) -> int:
    """Give back every key a stopped agent holds or waits for, so nobody waits on it for its
    whole lease. Returns how many claims ended."""
    ids = list(
        Claim.objects.filter(
            agent=agent, status__in=[ClaimStatus.HELD, ClaimStatus.WAITING]
        ).values_list("pk", flat=True)
    )
    for claim_id in ids:
        claim_release(agent=agent, claim_id=claim_id)
    return len(ids)


def claim_renew(*, agent: Agent, claim_id) -> Claim:
    """Extend the holder's lease by its length. A lapsed lease is renewed only if nobody
    waits; otherwise it expires now, the next waiter takes over and the renew is refused."""
    require_active(agent)
    claim = _own(agent, claim_id)
    with transaction.atomic():
        claim = (
            Claim.objects.select_for_update(of=("self",)).select_related("agent").get(pk=claim.pk)
        )
        now = timezone.now()
        if claim.status != ClaimStatus.HELD:
            raise _not_held(claim, f"The claim is {claim.status}, not held.")
        if _lapsed(claim, now) and _waiters(claim.resource_key):
            _end_hold(claim, status=ClaimStatus.EXPIRED, now=now)
            expired = _not_held(claim, "The lease ran out and the next waiter took over.")
        else:
            claim.lease_until = now + timedelta(seconds=claim.lease_seconds)
            claim.save(update_fields=["lease_until"])
            return claim
    raise expired  # after the commit, so the take-over stands


def claims_expire(*, now: datetime | None = None) -> int:
    """End every held claim past its lease and promote the next waiters (Celery beat)."""
    now = now or timezone.now()
    expired = 0
    lapsed = Claim.objects.filter(status=ClaimStatus.HELD, lease_until__lte=now)
    for claim_id in lapsed.values_list("pk", flat=True)[:1000]:
        with transaction.atomic():
            claim = (
                Claim.objects.select_for_update(of=("self",))
                .select_related("agent")
                .filter(pk=claim_id, status=ClaimStatus.HELD, lease_until__lte=now)
                .first()
            )
            if claim is not None:
                _end_hold(claim, status=ClaimStatus.EXPIRED, now=now)
                expired += 1
    held = Claim.objects.filter(status=ClaimStatus.HELD).values("resource_key")
    orphaned = (
        Claim.objects.filter(status=ClaimStatus.WAITING)
        .exclude(resource_key__in=held)
        .order_by()
        .values_list("resource_key", flat=True)
        .distinct()
    )
    for resource_key in list(orphaned[:1000]):
        try:
            with transaction.atomic():
                # NOWAIT: a locked waiter is being promoted by a release right now; waiting
                # for it would invert the lock order (holder, then waiters).
                waiting = Claim.objects.select_for_update(nowait=True).filter(
                    resource_key=resource_key, status=ClaimStatus.WAITING
                )
                if (
                    list(waiting)
                    and not Claim.objects.filter(
                        resource_key=resource_key, status=ClaimStatus.HELD
                    ).exists()
                ):
                    _promote(resource_key, now=now, reason="no holder")
        except DatabaseError:
            continue  # busy or taken meanwhile: the next sweep looks again
    return expired


# --- messages -------------------------------------------------------------------------------


def message_send(
    *,
    run: Run,
    sender: Agent,
    body: dict,
    recipient: Agent | None = None,
    step_run: StepRun | None = None,
) -> Message:
    """Post to one agent of the run, or to everyone on it (no recipient)."""
    if not isinstance(body, dict):
        raise DomainError(ErrorCode.VALIDATION_FAILED, "The body must be a JSON object.")
    size = len(json.dumps(body, separators=(",", ":")).encode())
    if size > MESSAGE_BODY_MAX_BYTES:
        raise DomainError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            "The message body is too large.",
            {"bytes": size, "max_bytes": MESSAGE_BODY_MAX_BYTES},
            413,
        )
    require_active(sender)
    _require_part(sender, run)
    _require_running(run)
    if recipient is not None and not takes_part(agent=recipient, run=run):
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "The recipient takes no part in this run.",
            {"recipient": recipient.slug},
        )
    if step_run is not None and step_run.run_id != run.pk:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "The step run belongs to another run.",
            {"step_run": str(step_run.pk)},
        )
    with transaction.atomic():
        message = Message.objects.create(
            run=run, sender=sender, recipient=recipient, step_run=step_run, body=body
        )
        to = recipient.slug if recipient else "everyone"
        data = {"message_id": message.pk, "recipient": recipient.slug if recipient else None}
        data |= {"body": body} if size <= EVENT_BODY_MAX_BYTES else {"body_bytes": size}
        RunEvent.objects.create(
            run=run,
            step_run=step_run,
            kind="message",
            actor=sender.slug,
            message=f"{sender.slug} wrote to {to}.",
            data=data,
        )
    return message


def messages_for(
    *, agent: Agent, run: Run, after_id: int | None = None, limit: int = MESSAGES_PAGE
) -> list[Message]:
    """Messages to the agent or to everyone on the run, oldest first, at most ``limit``
    (capped at ``MESSAGES_PAGE``); pass the last id seen as ``after_id`` for the next ones."""
    _require_part(agent, run)
    limit = max(1, min(limit, MESSAGES_PAGE))
    messages = (
        Message.objects.select_related("sender", "recipient")
        .filter(Q(recipient=agent) | Q(recipient__isnull=True), run=run)
        .order_by("id")
    )
    if after_id is not None:
        messages = messages.filter(id__gt=after_id)
    return list(messages[:limit])
