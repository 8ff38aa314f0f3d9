"""Log-only trials: draft policies decide beside the enabled ones on live traffic.

A trial is one draft policy (new, or replacing an enabled one) or a whole draft set
(replacing every enabled policy). While it runs, the gate asks each running trial's draft
on the very inputs of the live decision (``gate.decide(trials=True)``: one more Cedar
evaluation per trial, the verdict by the same rule) and ``action_request`` records a
``TrialDifference`` with the action, in its transaction, only when the verdicts differ. The
live outcome never changes, and a draft that fails is counted (``PolicyTrial.errors``),
never raised.

Starting, stopping and promoting move the policy-store version, so each process reads the
running trials once per version (``running``), never per decision. Promoting writes the
drafts through ``autonomy.policy.services`` only, as a person saving them would.
"""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from autonomy import audit
from autonomy.errors import DomainError, ErrorCode, IllegalTransition
from autonomy.models import (
    Policy,
    PolicyChange,
    PolicyTrial,
    TrialDifference,
    TrialKind,
    TrialStatus,
)
from autonomy.policy import engine, services
from autonomy.policy.versioned import PerVersion

log = logging.getLogger(__name__)

NAME_MAX = 160


@dataclass(frozen=True)
class RunningTrial:
    """A running trial as the gate uses it: its draft compiled on one store version."""

    pk: int
    name: str
    statements: engine.StatementSet


def draft_statements(*, trial: PolicyTrial, version: int | None) -> engine.StatementSet:
    """The statements the trial decides with on ``version``'s enabled policies. Raises
    ValueError when a draft does not compile."""
    if trial.kind == TrialKind.SET:
        replaces = None
        drafts = [(None, d["name"], d["text"]) for d in trial.drafts]
    else:
        replaces = {trial.replaces_id} if trial.replaces_id else set()
        drafts = [(trial.replaces_id, d["name"], d["text"]) for d in trial.drafts]
    return engine.store_for(version).with_drafts(drafts=drafts, replaces=replaces)


class RunningTrials:
    """The running trials of one store version (one query, each draft compiled once)."""

    def __init__(self, version: int):
        found = []
        for trial in PolicyTrial.objects.filter(status=TrialStatus.RUNNING).order_by("pk"):
            try:
                statements = draft_statements(trial=trial, version=version)
            except ValueError:
                # Validated when started and never edited, so only a bug lands here.
                log.exception("Policy trial %s does not compile; it is left out", trial.pk)
                continue
            found.append(RunningTrial(pk=trial.pk, name=trial.name, statements=statements))
        self.trials = tuple(found)


_running = PerVersion(RunningTrials)
running_forget = _running.forget


def running(*, version: int | None) -> tuple[RunningTrial, ...]:
    """The running trials, as of ``version`` (the one the decision read)."""
    return _running.get(version).trials


# --- recording (in the action's transaction) ----------------------------------------------


def differences_record(*, action, decision) -> None:
    """Record what the running trials would have decided otherwise (``decision.trials``,
    from ``gate.decide(trials=True)``), in the transaction that records ``action``."""
    if not decision.trials:
        return
    unit_id = action.agent.business_unit_id
    rows, failed = [], []
    for verdict in decision.trials:
        if verdict.failed:
            failed.append(verdict.trial_id)
            continue
        if verdict.verdict == decision.verdict:
            continue  # the live verdict moved after the gate (a standing approval used up)
        rows.append(
            TrialDifference(
                trial_id=verdict.trial_id,
                action=action,
                agent_id=action.agent_id,
                operation_id=action.operation_id,
                business_unit_id=unit_id,
                live_verdict=decision.verdict,
                draft_verdict=verdict.verdict,
                draft_reasons=verdict.reasons,
                created_at=action.created_at,
            )
        )
    if rows:
        TrialDifference.objects.bulk_create(rows)
    if failed:
        PolicyTrial.objects.filter(pk__in=failed).update(errors=F("errors") + 1)


# --- use cases ------------------------------------------------------------------------------


def _refuse(message: str, field: str, errors: list[str]) -> None:
    raise DomainError(ErrorCode.VALIDATION_FAILED, message, {"fields": {field: errors}})


def _may(by) -> None:
    if not services.may_change_policy(user=by):
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            "Only people who may change policies run trials.",
            status_code=403,
        )


def trial_start(
    *,
    name: str,
    text: str = "",
    replaces: Policy | None = None,
    drafts: list[dict] | None = None,
    by,
) -> PolicyTrial:
    """Start a trial: ``text`` as one draft policy (new, or replacing ``replaces``), or
    ``drafts`` ([{"name", "text"}]) as a whole set replacing the enabled policies. Each
    draft is validated as a policy save would; an invalid one starts nothing."""
    _may(by)
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        _refuse("A trial needs a name.", "name", [f"1 to {NAME_MAX} characters."])
    if drafts is not None:
        kind = TrialKind.SET
        if replaces is not None:
            _refuse("A draft set replaces every enabled policy.", "replaces", ["Leave empty."])
        if not drafts:
            _refuse("A draft set needs at least one policy.", "drafts", ["Empty."])
        drafts = [{"name": str(d["name"]).strip(), "text": d["text"]} for d in drafts]
        if len({d["name"] for d in drafts}) != len(drafts) or not all(d["name"] for d in drafts):
            _refuse("Each policy of a set needs its own name.", "drafts", ["Names repeat."])
    else:
        kind = TrialKind.POLICY
        drafts = [{"name": replaces.name if replaces is not None else name, "text": text}]
    for draft in drafts:
        errors = engine.validate(draft["text"])
        if errors:
            _refuse("The draft is not valid Cedar for this registry.", "text", errors)
    with transaction.atomic():
        trial = PolicyTrial.objects.create(
            name=name,
            kind=kind,
            drafts=drafts,
            replaces=replaces,
            started_by=by,
            started_at=timezone.now(),
        )
        audit.append(
            kind="policy_trial_started",
            actor=by.get_username(),
            payload={
                "trial": trial.pk,
                "name": name,
                "kind": kind,
                "replaces": replaces.pk if replaces is not None else None,
                "drafts": drafts,
            },
        )
        services.registry_changed()
    return trial


def _locked_running(trial: PolicyTrial, target: str) -> PolicyTrial:
    """The trial, locked; only a running trial is stopped or promoted."""
    locked = PolicyTrial.objects.select_for_update().get(pk=trial.pk)
    if locked.status != TrialStatus.RUNNING:
        raise IllegalTransition(current=locked.status, target=target)
    return locked


def trial_stop(*, trial: PolicyTrial, by) -> PolicyTrial:
    """Stop recording; what was recorded stays readable."""
    _may(by)
    with transaction.atomic():
        trial = _locked_running(trial, TrialStatus.STOPPED)
        trial.status, trial.stopped_at = TrialStatus.STOPPED, timezone.now()
        trial.save(update_fields=["status", "stopped_at"])
        audit.append(
            kind="policy_trial_stopped", actor=by.get_username(), payload={"trial": trial.pk}
        )
        services.registry_changed()
    return trial


def trial_promote(*, trial: PolicyTrial, by) -> PolicyTrial:
    """Make the draft live, through the policy services, in one transaction: one draft saves
    the policy it replaces (or a new one); a set saves each of its policies (by name) and
    switches off every enabled policy it does not name. The trial ends ``promoted``."""
    _may(by)
    with transaction.atomic():
        trial = _locked_running(trial, TrialStatus.PROMOTED)
        if trial.kind == TrialKind.SET:
            _promote_set(trial, by)
        else:
            draft = trial.drafts[0]
            target = trial.replaces
            services.policy_save(
                policy=target,
                name=target.name if target is not None else draft["name"],
                text=draft["text"],
                description=target.description if target is not None else "",
                enabled=True,
                by=by,
            )
        now = timezone.now()
        trial.status, trial.stopped_at = TrialStatus.PROMOTED, now
        trial.promoted_at, trial.promoted_by = now, by
        trial.save(update_fields=["status", "stopped_at", "promoted_at", "promoted_by"])
        audit.append(
            kind="policy_trial_promoted", actor=by.get_username(), payload={"trial": trial.pk}
        )
    return trial


def _promote_set(trial: PolicyTrial, by) -> None:
    names = [d["name"] for d in trial.drafts]
    existing = {p.name: p for p in Policy.objects.filter(name__in=names)}
    for draft in trial.drafts:
        current = existing.get(draft["name"])
        services.policy_save(
            policy=current,
            name=draft["name"],
            text=draft["text"],
            description=current.description if current is not None else "",
            enabled=True,
            by=by,
            change=PolicyChange.PROMOTED,
            note=f"promoted from trial {trial.name!r}",
        )
    for policy in Policy.objects.filter(enabled=True).exclude(name__in=names):
        services.policy_set_enabled(policy=policy, enabled=False, by=by)
