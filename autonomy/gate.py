"""The one decision function every agent action passes: API, workflows, simulate, MCP.

    status → credential → operation enabled → grant → limits → content rules → risk → Cedar
      → thresholds → autonomy level (``autonomy.levels``: shadow, supervised, guarded,
      autonomous) → standing approvals (``autonomy.standing``)

A standing approval a person granted settles, ahead of time, only what a person would have
settled for this pattern: the risk threshold's and an approval policy's reasons
(``STANDING_WAIVES``). It never lifts a denial, the supervised level (rollouts measure
people's answers), a workflow step's approval gate or a content rule's ``needs_approval``.
Its daily bound is counted by the caller that records the action
(``autonomy.standing.services.standing_consume``), which tells the decision what it found
(``Decision.standing_used``).

Content rules (``autonomy.content``) are inputs like the others: a ``block`` match is a
reason to deny, a ``needs_approval`` match a reason to ask a person, and ``redact`` / ``log``
matches are reasons that change nothing but the parameters (``Decision.params``: what the
caller stores and sends when a rule replaced text).

Log-only trials (``autonomy.policy.trials``) are asked beside the live policies when the
caller wants them (``trials=True``: ``action_request``): the grounds are gathered once and
``_conclude`` turns the live answer and each draft's into verdicts by the same rule.

It reads a constant number of rows (operation, grants, recent behaviour, policy version) and
collects every reason rather than stopping at the first, so a denial explains itself.
It writes nothing: recording the decision is the caller's job (``autonomy.services``).
"""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.utils import timezone

from agents.models import AgentStatus
from autonomy import conditions, levels, risk, selectors
from autonomy.content import rules as content_rules
from autonomy.errors import ErrorCode
from autonomy.models import AutonomyLevel, ContentEffect, Operation, Verdict
from autonomy.policy import engine as policy_engine
from autonomy.policy import trials as policy_trials
from autonomy.standing import selectors as standing_selectors

log = logging.getLogger(__name__)

# The reasons to ask a person that a standing approval settles ahead of time.
STANDING_WAIVES = frozenset({ErrorCode.RISK_NEEDS_APPROVAL, ErrorCode.POLICY_REQUIRES_APPROVAL})
# Every reason the gate gives for asking a person (what a person's answer settles).
ASKS_A_PERSON = STANDING_WAIVES | {
    ErrorCode.AUTONOMY_SUPERVISED,
    ErrorCode.APPROVAL_GATE,
    ErrorCode.CONTENT_NEEDS_APPROVAL,
}

STATUS_CODES = {
    AgentStatus.PENDING: ErrorCode.AGENT_PENDING_APPROVAL,
    AgentStatus.PAUSED: ErrorCode.AGENT_PAUSED,
    AgentStatus.QUARANTINED: ErrorCode.AGENT_QUARANTINED,
    AgentStatus.RETIRED: ErrorCode.AGENT_RETIRED,
}


@dataclass(frozen=True)
class ApprovalAsk:
    """A process's own reason for a person to approve what the gate would allow (a workflow
    step's approval gate): always, or only when its condition (``autonomy.conditions``) holds
    over the context passed with it. An input of the decision, so simulate shows it too."""

    reason: str
    when: str = ""
    context: dict = field(default_factory=dict)

    def applies(self) -> bool:
        return not self.when or conditions.holds(self.when, self.context)

    def as_reason(self) -> dict:
        details = {"when": self.when} if self.when else {}
        message = f"{self.reason} (when {self.when})" if self.when else self.reason
        return reason_entry(ErrorCode.APPROVAL_GATE, message, **details)


@dataclass(frozen=True)
class TrialVerdict:
    """What a running log-only trial's draft would have decided where it differs from the
    live verdict (``failed``: the draft could not be evaluated; nothing else is known)."""

    trial_id: int
    verdict: str
    reasons: list[dict]
    failed: bool = False


@dataclass
class Decision:
    verdict: str
    reasons: list[dict] = field(default_factory=list)
    risk_score: int = 0
    risk_factors: list[dict] = field(default_factory=list)
    policies: dict = field(default_factory=dict)
    grant: dict | None = None
    amount: Decimal | None = None
    level: levels.Level = levels.DEFAULT
    # The parameters to store and send when a content rule replaced text (``block`` or
    # ``redact``); None when they are the request's as they came.
    params: dict | None = None
    # The standing approvals that allow it (most specific first) when one settled its
    # reasons to ask a person; the caller counts a use on one (``standing_used``).
    standing: list[standing_selectors.Standing] = field(default_factory=list)
    # The running log-only trials that would have decided otherwise (only when asked:
    # ``decide(trials=True)``); the caller records them with the action.
    trials: list[TrialVerdict] = field(default_factory=list)

    @property
    def shadow(self) -> bool:
        """Decided and recorded, never executed (the shadow level)."""
        return self.level.level == AutonomyLevel.SHADOW and self.verdict != Verdict.DENY

    def standing_used(self, used: standing_selectors.Standing | None) -> None:
        """What counting the daily bound found: ``used`` (one of ``standing``) allowed this
        action, or None: each has used today's bound, and the reasons it settled go to a
        person after all."""
        at = next(i for i, r in enumerate(self.reasons) if r["code"] == ErrorCode.STANDING_APPROVAL)
        waived = self.reasons[at]["details"]["waived"]
        if used is not None:
            self.reasons[at] = _standing_reason(used, waived)
            return
        used_up = reason_entry(
            ErrorCode.STANDING_APPROVAL_USED_UP,
            "Standing approval "
            + ", ".join(f"#{s.pk} ({s.daily_limit} a day)" for s in self.standing)
            + " has used its daily bound today.",
            standing=[s.as_details() for s in self.standing],
        )
        self.verdict = Verdict.NEEDS_APPROVAL
        self.reasons[at : at + 1] = [*waived, used_up]
        self.standing = []

    def as_dict(self) -> dict:
        """Field by field: ``dataclasses.asdict`` deep-copies, and the gate calls this on every
        request (callers that keep or change the dict copy it, as ``audit.append`` does)."""
        return {
            "verdict": self.verdict,
            "reasons": self.reasons,
            "risk_score": self.risk_score,
            "risk_factors": self.risk_factors,
            "policies": self.policies,
            "grant": self.grant,
            "amount": None if self.amount is None else str(self.amount),
            "autonomy_level": self.level.as_dict(),
            "redacted": self.params is not None,
        }


def reason_entry(code, message: str, **details) -> dict:
    """One entry of an action's ``reasons``: a stable code, a message, details."""
    return {"code": str(code), "message": message, "details": details}


def _standing_reason(standing: standing_selectors.Standing, waived: list[dict]) -> dict:
    return reason_entry(
        ErrorCode.STANDING_APPROVAL,
        f"Allowed by standing approval #{standing.pk}: {standing.summary} (granted by "
        f"{standing.granted_by}, until {standing.expires_at:%Y-%m-%d %H:%M} UTC).",
        standing=standing.as_details(),
        waived=waived,
    )


def _cedar_value(value):
    """Cedar has no floats or nulls: numbers become whole Longs, nulls are left out."""
    if isinstance(value, bool) or isinstance(value, int | str):
        return value
    if isinstance(value, float | Decimal):
        return int(round(value))
    if isinstance(value, dict):
        return {str(k): _cedar_value(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_cedar_value(v) for v in value if v is not None]
    return str(value)


def _limits(agent) -> tuple[int, Decimal | None]:
    per_minute = agent.max_actions_per_minute or settings.AUTONOMY_DEFAULT_ACTIONS_PER_MINUTE
    spend = agent.max_daily_spend
    if spend is None and settings.AUTONOMY_DEFAULT_DAILY_SPEND is not None:
        spend = Decimal(settings.AUTONOMY_DEFAULT_DAILY_SPEND)
    return per_minute, spend


class VersionMoved(Exception):
    """The policy store moved past the version a decision was asked to confirm."""

    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def _confirm(guess: int | None, seen: int) -> None:
    if (guess or 0) != seen:
        raise VersionMoved(seen)


def decide(
    *,
    agent,
    operation: Operation,
    params: dict,
    credential=None,
    at: datetime | None = None,
    draft_text: str | None = None,
    draft_replaces: int | None = None,
    version: int | None = None,
    confirm_version: bool = False,
    approval: ApprovalAsk | None = None,
    release: bool = False,
    template_key: str | None = None,
    trials: bool = False,
) -> Decision:
    """``approval``: the caller's process wants a person to approve this even when the gate
    would allow it (a workflow step's approval gate and its condition); it never turns a
    denial into anything else. ``release``: the
    decision again for an action a person approved (``autonomy.actions.action_release``):
    every check holds again (status, grant, policy, risk ceiling, budget), except that the
    reasons that sent it to a person are what the person settled, and its request was
    counted against the rate limit already.

    ``version``: the policy-store version the caller read for this request (see
    ``autonomy.policy.engine.store_version``), so the decision does not read it again. With
    ``confirm_version`` it is a guess (the one ``selectors.cached_version`` gives): the
    decision checks it against what its own read sees and raises ``VersionMoved`` when the
    store moved, so the caller resolves its operation again and asks again.

    ``template_key``: the workflow template a step acts for, whose autonomy level applies
    too. The level (``autonomy.levels.level_for``, the most restrictive that applies) is an
    input here: ``supervised`` sends what would be allowed to a person, ``autonomous`` skips
    the risk-threshold approval (policy, grants, limits and the deny threshold still hold),
    and ``shadow`` marks a decision to be recorded and never executed.

    ``trials``: also decide with each running log-only trial's draft
    (``autonomy.policy.trials``), from the same grounds and one more Cedar evaluation each;
    the verdicts that differ land in ``Decision.trials``. The live decision never changes."""
    at = at or timezone.now()
    reasons: list[dict] = []

    stopped = agent.status != AgentStatus.ACTIVE
    credential_dead = credential is not None and credential.state(at) != "active"
    if confirm_version and (stopped or credential_dead):
        # These answers come before the one read that would confirm the guess.
        _confirm(version, policy_engine.store_version())
    if stopped:
        code = STATUS_CODES[agent.status]
        return Decision(
            verdict=Verdict.DENY,
            reasons=[
                reason_entry(
                    code,
                    f"The agent is {agent.get_status_display().lower()}.",
                    reason=agent.status_reason,
                )
            ],
        )
    if credential_dead:
        return Decision(
            verdict=Verdict.DENY,
            reasons=[reason_entry(ErrorCode.CREDENTIAL_REVOKED, "The credential is not active.")],
        )
    if not (operation.enabled and operation.connector.enabled):
        reasons.append(reason_entry(ErrorCode.OPERATION_DISABLED, f"{operation.key} is disabled."))

    per_minute, daily_spend = _limits(agent)
    grant, behaviour, seen = selectors.gate_facts(agent=agent, operation=operation, at=at)
    if confirm_version:
        _confirm(version, seen)
    if grant is None:
        reasons.append(
            reason_entry(
                ErrorCode.GRANT_MISSING,
                f"Neither the agent nor its role {agent.role.slug!r} is granted {operation.key}.",
                operation=operation.key,
            )
        )

    content = _content(agent=agent, operation=operation, params=params, version=seen)
    reasons += content.reasons(ContentEffect.BLOCK)
    noted = content.reasons(ContentEffect.REDACT, ContentEffect.LOG)

    amount_value = risk.param_number(params, operation.amount_param)
    count_value = risk.param_number(params, operation.count_param)
    try:
        amount = Decimal(str(amount_value)).quantize(Decimal("0.01")) if amount_value else None
    except InvalidOperation:
        amount = None
    if not release and behaviour.actions_last_minute >= per_minute:
        reasons.append(
            reason_entry(
                ErrorCode.RATE_LIMITED,
                f"The agent used its {per_minute} actions for this minute.",
                limit=per_minute,
                used=behaviour.actions_last_minute,
            )
        )
    if daily_spend is not None and amount and behaviour.spend_today + amount > daily_spend:
        reasons.append(
            reason_entry(
                ErrorCode.BUDGET_EXCEEDED,
                "This amount would exceed the agent's daily spend.",
                limit=str(daily_spend),
                spent_today=str(behaviour.spend_today),
                amount=str(amount),
            )
        )

    assessment = risk.risk_score(
        sensitivity=operation.sensitivity,
        data_class=operation.data_class,
        pii=operation.pii,
        financial=operation.financial,
        amount=amount_value,
        record_count=count_value,
        risk_tier=agent.risk_tier,
        behaviour=behaviour,
        rate_limit=per_minute,
        at=at,
    )
    context = {
        "params": _cedar_value(params),
        "risk_score": assessment.score,
        "hour": at.hour,
        "weekday": at.isoweekday(),
        "flags": list(behaviour.open_flags),
    }
    if amount_value is not None:
        context["amount"] = _cedar_value(amount_value)
    if count_value is not None:
        context["record_count"] = _cedar_value(count_value)
    grounds = _Grounds(
        agent=agent,
        operation=operation,
        at=at,
        reasons=tuple(reasons),
        noted=tuple(noted),
        content=content,
        assessment=assessment,
        grant=grant,
        amount=amount,
        level=levels.level_for(
            agent=agent, operation_key=operation.key, template_key=template_key, version=seen
        ),
        release=release,
        approval=approval,
        version=seen,
    )
    running = policy_trials.running(version=seen) if trials else ()
    result = policy_engine.evaluate(
        agent=agent,
        operation=operation,
        context=context,
        draft_text=draft_text,
        draft_replaces=draft_replaces,
        version=version,
        variants=[trial.statements for trial in running],
    )
    decision = _conclude(grounds, result)
    if running:
        decision.trials = _trial_verdicts(grounds, decision, running, result.variants)
    return decision


@dataclass(frozen=True)
class _Grounds:
    """What a verdict rests on besides the policies' answer, gathered once per request: the
    enabled policies and a log-only trial's draft reach their verdicts from the same grounds
    by the same rule (``_conclude``)."""

    agent: object
    operation: Operation
    at: datetime
    reasons: tuple[dict, ...]
    noted: tuple[dict, ...]
    content: content_rules.Scan
    assessment: risk.RiskAssessment
    grant: dict | None
    amount: Decimal | None
    level: levels.Level
    release: bool
    approval: "ApprovalAsk | None"
    version: int


def _trial_verdicts(grounds: _Grounds, live: Decision, running, answers) -> list[TrialVerdict]:
    """The running trials whose draft would decide otherwise (or failed to decide). A trial
    never changes or breaks the live decision: a failure is logged and counted."""
    found = []
    for trial, answer in zip(running, answers, strict=True):
        if answer.failed:
            found.append(TrialVerdict(trial_id=trial.pk, verdict="", reasons=[], failed=True))
            continue
        try:
            draft = _conclude(grounds, answer)
        except Exception:
            log.exception("Policy trial %s failed to reach a verdict", trial.pk)
            found.append(TrialVerdict(trial_id=trial.pk, verdict="", reasons=[], failed=True))
            continue
        if draft.verdict != live.verdict:
            found.append(
                TrialVerdict(trial_id=trial.pk, verdict=draft.verdict, reasons=draft.reasons)
            )
    return found


def _conclude(grounds: _Grounds, result: policy_engine.PolicyResult) -> Decision:
    """The verdict from the grounds and one policy answer: the one rule, for the enabled
    policies and for a trial's draft alike."""
    agent, operation, at = grounds.agent, grounds.operation, grounds.at
    assessment, level, content = grounds.assessment, grounds.level, grounds.content
    approval, release, seen = grounds.approval, grounds.release, grounds.version
    reasons = list(grounds.reasons)
    noted = list(grounds.noted)

    policies = {
        "permits": result.permits,
        "forbids": result.forbids,
        "approval_required": result.approval_required,
        "errors": result.errors,
    }
    if result.forbids:
        reasons.append(
            reason_entry(
                ErrorCode.POLICY_FORBID,
                "A policy forbids this.",
                policies=[p["policy"] for p in result.forbids],
            )
        )
    elif not result.allowed:
        reasons.append(
            reason_entry(ErrorCode.POLICY_NO_PERMIT, "No policy permits this (default deny).")
        )

    unit = agent.business_unit
    if assessment.score >= unit.deny_threshold:
        reasons.append(
            reason_entry(
                ErrorCode.RISK_TOO_HIGH,
                f"Risk {assessment.score} is at or above {unit.name}'s limit "
                f"{unit.deny_threshold}.",
                score=assessment.score,
                threshold=unit.deny_threshold,
            )
        )
    decision = Decision(
        verdict=Verdict.DENY,
        reasons=reasons,
        risk_score=assessment.score,
        risk_factors=assessment.factors,
        policies=policies,
        grant=grounds.grant,
        amount=grounds.amount,
        level=level,
        params=content.params,
    )
    if reasons:
        reasons += content.reasons(ContentEffect.NEEDS_APPROVAL) + noted
        return decision

    if release:
        decision.verdict = Verdict.ALLOW
        reasons.append(
            reason_entry(
                ErrorCode.ALLOWED,
                "Approved by a person, and still granted, permitted and within limits.",
            )
        )
        reasons.extend(noted)
        _note_shadow(decision)
        return decision
    if result.approval_required:
        reasons.append(
            reason_entry(
                ErrorCode.POLICY_REQUIRES_APPROVAL,
                "A policy asks a person to approve this.",
                policies=[p["policy"] for p in result.permits],
            )
        )
    waived = []
    if assessment.score >= unit.approval_threshold and level.level == AutonomyLevel.AUTONOMOUS:
        waived.append(
            reason_entry(
                ErrorCode.AUTONOMY_AUTONOMOUS,
                f"Risk {assessment.score} is at or above {unit.name}'s approval threshold "
                f"{unit.approval_threshold}; the level is {level.describe()}, so risk "
                "thresholds do not ask a person.",
                **level.as_dict(),
            )
        )
    elif assessment.score >= unit.approval_threshold:
        reasons.append(
            reason_entry(
                ErrorCode.RISK_NEEDS_APPROVAL,
                f"Risk {assessment.score} is at or above {unit.name}'s approval threshold "
                f"{unit.approval_threshold}.",
                score=assessment.score,
                threshold=unit.approval_threshold,
            )
        )
    reasons += content.reasons(ContentEffect.NEEDS_APPROVAL)
    if approval is not None and approval.applies():
        reasons.append(approval.as_reason())
    if level.level == AutonomyLevel.SUPERVISED:
        reasons.append(
            reason_entry(
                ErrorCode.AUTONOMY_SUPERVISED,
                f"The level is {level.describe()}: a person approves every action.",
                **level.as_dict(),
            )
        )
    if reasons and all(r["code"] in STANDING_WAIVES for r in reasons):
        decision.standing = standing_selectors.matching(
            agent=agent, operation=operation, risk=assessment.score, amount=grounds.amount, at=at,
            version=seen,
        )  # fmt: skip
    if decision.standing:
        reasons[:] = [_standing_reason(decision.standing[0], list(reasons))]
        decision.verdict = Verdict.ALLOW
    else:
        decision.verdict = Verdict.NEEDS_APPROVAL if reasons else Verdict.ALLOW
    if not reasons:
        reasons.append(
            reason_entry(
                ErrorCode.ALLOWED,
                "Granted, permitted by policy, risk below the approval threshold."
                if not waived
                else "Granted, permitted by policy and within limits.",
            )
        )
    reasons.extend(waived)
    reasons.extend(noted)
    _note_shadow(decision)
    return decision


def _content(*, agent, operation: Operation, params: dict, version: int) -> content_rules.Scan:
    """The content rules that apply to this agent and operation, run over its declared
    content; nothing to read or scan for an operation that declares none."""
    if not (operation.content_params or operation.recipient_params):
        return content_rules.Scan()
    applying = content_rules.rule_set(version).applying(agent=agent, operation=operation)
    return content_rules.scan(rules=applying, operation=operation, params=params)


def _note_shadow(decision: Decision) -> None:
    if decision.shadow:
        decision.reasons.append(
            reason_entry(
                ErrorCode.AUTONOMY_SHADOW,
                f"The level is {decision.level.describe()}: decided and recorded, never executed.",
                **decision.level.as_dict(),
            )
        )
