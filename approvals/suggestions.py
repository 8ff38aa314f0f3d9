"""Suggestions from history: patterns people keep approving as asked, proposed to policy owners
as a standing approval or a policy change, with the evidence and what it would have done.

A pattern is (operation, agent role, business unit) over the actions that waited for people
(an approval was opened) in the last ``AUTONOMY_SUGGEST_WINDOW_DAYS``. What counts is the
action's ``human_decision``, which the kernel writes from people's answers only:

- *approved unchanged*: ``approved`` — people approved it as asked (a quorum of approvals, or
  an override approve by someone with authority: both are people saying yes to the request
  as it stood). An expiry whose outcome is approve is nobody's answer and never counts.
- *changed*: approved with changes (the parameters were narrowed): not as asked.
- *rejected*: people said no.

A pattern is proposed when approved unchanged ≥ ``AUTONOMY_SUGGEST_MIN_APPROVED`` and
rejected ≤ ``AUTONOMY_SUGGEST_MAX_REJECTED``. It is a *policy* change when every approved one
waited only because a policy's ``@approval("required")`` asked (a policy can stop asking); a
*standing* approval otherwise (the risk threshold is the unit's, and only a standing
approval waives it, within bounds).

The proposal's bounds: the highest risk among the approved-unchanged, their highest amount
(rounded up to a whole number, as Cedar compares it) and, for a standing approval, a daily
bound of ``AUTONOMY_SUGGEST_HEADROOM`` × the busiest day's approvals-unchanged (rounded up).
``simulate`` replays it over every recorded request of the pattern in the window, oldest
first: one that waited only for reasons the proposal waives, within its risk and amount
bounds and under its daily bound that day (UTC), would not have waited. A supervised level, a
workflow step's approval gate or a content rule would still have asked a person: a standing
approval waives the risk threshold and policy approval, never those.

``suggestions_refresh`` runs on beat: a constant number of queries whatever the number of
requests or patterns, one open suggestion per pattern (a database constraint), its figures
refreshed while open. A pattern dismissed or opened as a draft is not proposed again until a
window has passed since.
"""

import math
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import reduce
from operator import or_
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Q
from django.utils import timezone

from approvals.models import Suggestion, SuggestionKind, SuggestionStatus
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionRequest, HumanDecision, Policy
from autonomy.policy import drafts
from autonomy.policy import services as policy_services

# The reasons the gate gives for asking a person (``autonomy.gate``).
ASKS_A_PERSON = frozenset(
    {
        ErrorCode.RISK_NEEDS_APPROVAL,
        ErrorCode.POLICY_REQUIRES_APPROVAL,
        ErrorCode.AUTONOMY_SUPERVISED,
        ErrorCode.APPROVAL_GATE,
        ErrorCode.CONTENT_NEEDS_APPROVAL,
    }
)
# What each kind of proposal would have spared people.
WAIVES = {
    SuggestionKind.STANDING: frozenset(
        {ErrorCode.RISK_NEEDS_APPROVAL, ErrorCode.POLICY_REQUIRES_APPROVAL}
    ),
    SuggestionKind.POLICY: frozenset({ErrorCode.POLICY_REQUIRES_APPROVAL}),
}
SAMPLES = 5
# The standing-approval grant form (``/inbox/standing/new/``), prefilled from GET parameters.
STANDING_FORM_PATH = "/inbox/standing/new/"
CHANGE_POLICY = "autonomy.change_policy"


@dataclass(frozen=True)
class Record:
    """One recorded request that waited for people, as the replay reads it."""

    pk: str
    created_at: datetime
    risk_score: int
    amount: Decimal | None
    asks: frozenset
    human_decision: str
    policy_ids: tuple


@dataclass(frozen=True)
class Bounds:
    max_risk: int
    max_amount: int | None
    daily_limit: int | None

    def as_dict(self) -> dict:
        return {
            "max_risk": self.max_risk,
            "max_amount": self.max_amount,
            "daily_limit": self.daily_limit,
        }


def _pattern_key(operation_id, role_id, unit_id) -> str:
    return f"{operation_id}:{role_id}:{unit_id}"


def _asks(reasons) -> frozenset:
    codes = {r.get("code") for r in reasons or [] if isinstance(r, dict)}
    return frozenset(c for c in ASKS_A_PERSON if c in codes)


def _approval_policy_ids(policy_ids) -> tuple:
    """The permits that decided the request: the policy that asked is among them."""
    permits = (policy_ids or {}).get("permits") or []
    return tuple(sorted({p["policy_id"] for p in permits if p.get("policy_id") is not None}))


def kind_for(records: list[Record]) -> str:
    """Policy when every approved-unchanged request waited only for a policy's approval."""
    approved = [r for r in records if r.human_decision == HumanDecision.APPROVED]
    only_policy = frozenset({ErrorCode.POLICY_REQUIRES_APPROVAL})
    if approved and all(r.asks == only_policy and r.policy_ids for r in approved):
        return SuggestionKind.POLICY
    return SuggestionKind.STANDING


def bounds_for(records: list[Record], *, kind: str) -> Bounds:
    approved = [r for r in records if r.human_decision == HumanDecision.APPROVED]
    amounts = [r.amount for r in approved if r.amount is not None]
    busiest = max(Counter(r.created_at.date() for r in approved).values(), default=0)
    return Bounds(
        max_risk=max((r.risk_score for r in approved), default=0),
        max_amount=math.ceil(max(amounts)) if amounts else None,
        daily_limit=math.ceil(busiest * settings.AUTONOMY_SUGGEST_HEADROOM)
        if kind == SuggestionKind.STANDING
        else None,
    )


def simulate(records: list[Record], *, kind: str, bounds: Bounds, days: int) -> dict:
    """The proposal replayed over ``records`` (oldest first): how many would not have waited,
    why the others still would, and what people had answered to the ones let through."""
    waives = WAIVES[kind]
    waits = Counter()
    allowed_on = Counter()
    allowed = Counter()
    for r in sorted(records, key=lambda r: (r.created_at, r.pk)):
        if r.asks - waives:
            waits["other_reasons"] += 1
        elif r.risk_score > bounds.max_risk:
            waits["risk_above"] += 1
        elif r.amount is not None and (bounds.max_amount is None or r.amount > bounds.max_amount):
            waits["amount_above"] += 1
        elif bounds.daily_limit is not None and allowed_on[r.created_at.date()] >= (
            bounds.daily_limit
        ):
            waits["over_daily_limit"] += 1
        else:
            allowed_on[r.created_at.date()] += 1
            allowed[r.human_decision or "undecided"] += 1
    would_allow = sum(allowed.values())
    return {
        "replayed": len(records),
        "would_allow": would_allow,
        "would_wait": len(records) - would_allow,
        "wait_reasons": {
            k: waits[k] for k in ("risk_above", "amount_above", "over_daily_limit", "other_reasons")
        },
        # What people had answered to the requests the proposal lets through: the rejected
        # and changed ones are its cost.
        "would_allow_approved": allowed[HumanDecision.APPROVED],
        "would_allow_changed": allowed[HumanDecision.CHANGED],
        "would_allow_rejected": allowed[HumanDecision.REJECTED],
        "would_allow_undecided": allowed["undecided"],
        "per_day": round(would_allow / days, 2),
    }


def evidence_for(records: list[Record], *, days: int, since, until) -> dict:
    said = Counter(r.human_decision for r in records)
    approved = [r for r in records if r.human_decision == HumanDecision.APPROVED]
    amounts = [r.amount for r in approved if r.amount is not None]
    return {
        "window_days": days,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "waited": len(records),
        "approved": said[HumanDecision.APPROVED],
        "changed": said[HumanDecision.CHANGED],
        "rejected": said[HumanDecision.REJECTED],
        "undecided": said[""],
        "min_risk": min((r.risk_score for r in approved), default=0),
        "max_risk": max((r.risk_score for r in approved), default=0),
        "max_amount": str(max(amounts)) if amounts else None,
        "busiest_day": max(Counter(r.created_at.date() for r in approved).values(), default=0),
        "samples": [r.pk for r in approved[-SAMPLES:]],
        "policies": sorted({p for r in approved for p in r.policy_ids}),
    }


# --- the refresh ---------------------------------------------------------------------------


def _waited(since, until):
    """Actions that waited for people (an approval was opened) in the window."""
    return ActionRequest.objects.filter(
        approval__isnull=False, created_at__gte=since, created_at__lt=until
    )


def _qualifying(since, until) -> list[dict]:
    """One aggregate over the window: the patterns over the thresholds."""
    decided = {
        "approved": HumanDecision.APPROVED,
        "rejected": HumanDecision.REJECTED,
    }
    return list(
        _waited(since, until)
        .values("operation_id", "agent__role_id", "agent__business_unit_id")
        .annotate(**{k: Count("pk", filter=Q(human_decision=v)) for k, v in decided.items()})
        .filter(
            approved__gte=settings.AUTONOMY_SUGGEST_MIN_APPROVED,
            rejected__lte=settings.AUTONOMY_SUGGEST_MAX_REJECTED,
        )
        .order_by()
    )


def _records(patterns: list[dict], since, until) -> dict[str, list[Record]]:
    """Every waited request of the given patterns, in one query."""
    match = reduce(
        or_,
        (
            Q(
                operation_id=p["operation_id"],
                agent__role_id=p["agent__role_id"],
                agent__business_unit_id=p["agent__business_unit_id"],
            )
            for p in patterns
        ),
    )
    rows = (
        _waited(since, until)
        .filter(match)
        .order_by("created_at", "pk")
        .values_list(
            "pk", "operation_id", "agent__role_id", "agent__business_unit_id", "created_at",
            "risk_score", "amount", "reasons", "human_decision", "policy_ids",
        )
    )  # fmt: skip
    by_pattern: dict[str, list[Record]] = {}
    for pk, op, role, unit, at, risk, amount, reasons, said, policy_ids in rows:
        by_pattern.setdefault(_pattern_key(op, role, unit), []).append(
            Record(
                pk=str(pk), created_at=at, risk_score=risk, amount=amount, asks=_asks(reasons),
                human_decision=said, policy_ids=_approval_policy_ids(policy_ids),
            )
        )  # fmt: skip
    return by_pattern


def suggestions_refresh(*, now: datetime | None = None) -> dict[str, int]:
    """Propose, refresh or withdraw suggestions from the last window's history. Runs on beat;
    safe to run twice or at once (one open suggestion per pattern)."""
    now = now or timezone.now()
    days = settings.AUTONOMY_SUGGEST_WINDOW_DAYS
    since = now - timedelta(days=days)
    patterns = _qualifying(since, now)
    keys = {
        _pattern_key(p["operation_id"], p["agent__role_id"], p["agent__business_unit_id"]): p
        for p in patterns
    }
    counts = {"proposed": 0, "refreshed": 0, "withdrawn": 0}
    with transaction.atomic():
        counts["withdrawn"] = (
            Suggestion.objects.filter(status=SuggestionStatus.OPEN)
            .exclude(pattern_key__in=keys)
            .delete()[0]
        )
        if not keys:
            return counts
        known = list(Suggestion.objects.filter(pattern_key__in=keys))
        open_ = {s.pattern_key: s for s in known if s.status == SuggestionStatus.OPEN}
        resting = {s.pattern_key for s in known if s.status != SuggestionStatus.OPEN and
                   s.updated_at >= since}  # fmt: skip
        inbox_total = _waited(since, now).count()
        records = _records(patterns, since, now)
        new, changed = [], []
        for key, pattern in keys.items():
            if key in resting:
                continue
            rows = records.get(key, [])
            kind = kind_for(rows)
            bounds = bounds_for(rows, kind=kind)
            simulation = {
                "bounds": bounds.as_dict(),
                **simulate(rows, kind=kind, bounds=bounds, days=days),
            }
            figures = {
                "kind": kind,
                "evidence": evidence_for(rows, days=days, since=since, until=now),
                "simulation": simulation,
                "per_day": simulation["per_day"],
                "inbox_share": round(simulation["would_allow"] / inbox_total, 4)
                if inbox_total
                else 0.0,
                "updated_at": now,
            }
            suggestion = open_.get(key)
            if suggestion is None:
                new.append(
                    Suggestion(
                        pattern_key=key,
                        operation_id=pattern["operation_id"],
                        role_id=pattern["agent__role_id"],
                        business_unit_id=pattern["agent__business_unit_id"],
                        **figures,
                    )
                )
            else:
                for name, value in figures.items():
                    setattr(suggestion, name, value)
                changed.append(suggestion)
        # A refresh running at once proposed the same pattern: its row stands, same figures.
        Suggestion.objects.bulk_create(new, ignore_conflicts=True)
        Suggestion.objects.bulk_update(
            changed, ["kind", "evidence", "simulation", "per_day", "inbox_share", "updated_at"]
        )
    counts["proposed"], counts["refreshed"] = len(new), len(changed)
    return counts


# --- people acting on one ------------------------------------------------------------------


def may_review(*, user) -> bool:
    """Policy owners: people who may change policies; never an agent's service user."""
    return (
        bool(user and user.is_authenticated and user.is_active)
        and not hasattr(user, "agent")
        and user.has_perm(CHANGE_POLICY)
    )


def _open_locked(*, suggestion_id, by) -> Suggestion:
    if not may_review(user=by):
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            "Only people who may change policies act on suggestions.",
            status_code=403,
        )
    suggestion = (
        Suggestion.objects.select_for_update(of=("self",))
        .select_related("operation__connector", "role", "business_unit")
        .filter(pk=suggestion_id)
        .first()
    )
    if suggestion is None:
        raise DomainError(ErrorCode.NOT_FOUND, "No such suggestion.", status_code=404)
    if suggestion.status != SuggestionStatus.OPEN:
        raise DomainError(
            ErrorCode.SUGGESTION_NOT_OPEN,
            f"This suggestion is already {suggestion.get_status_display().lower()}.",
            {"status": suggestion.status},
            status_code=409,
        )
    return suggestion


def _close(suggestion: Suggestion, *, status: str, by, policy: Policy | None = None) -> None:
    suggestion.status, suggestion.closed_by, suggestion.policy = status, by, policy
    suggestion.updated_at = timezone.now()
    suggestion.save(update_fields=["status", "closed_by", "policy", "updated_at"])


def suggestion_dismiss(*, suggestion_id, by) -> Suggestion:
    """Not now: the pattern is not proposed again until a window has passed."""
    with transaction.atomic():
        suggestion = _open_locked(suggestion_id=suggestion_id, by=by)
        _close(suggestion, status=SuggestionStatus.DISMISSED, by=by)
    return suggestion


def standing_form_url(suggestion: Suggestion) -> str:
    """The standing-approval grant form, prefilled with the proposal's scope and bounds."""
    bounds = suggestion.simulation.get("bounds") or {}
    params = {
        "operation": suggestion.operation.key,
        "role": suggestion.role.slug,
        "unit": suggestion.business_unit.slug,
        "max_risk": bounds.get("max_risk"),
        "max_amount": bounds.get("max_amount"),
        "daily_limit": bounds.get("daily_limit"),
        "days": settings.AUTONOMY_SUGGEST_STANDING_DAYS,
        "source": f"suggestion:{suggestion.pk}",
    }
    return f"{STANDING_FORM_PATH}?{urlencode({k: v for k, v in params.items() if v is not None})}"


def suggestion_open_standing(*, suggestion_id, by) -> str:
    """Open the proposal as a standing-approval draft: the suggestion is marked drafted and
    the caller sends the person to the prefilled grant form (whose rules decide the grant)."""
    with transaction.atomic():
        suggestion = _open_locked(suggestion_id=suggestion_id, by=by)
        _close(suggestion, status=SuggestionStatus.DRAFTED, by=by)
    return standing_form_url(suggestion)


def draft_policy_text(suggestion: Suggestion) -> tuple[str, list[Policy]]:
    """The Cedar replacing the policies that asked for approval, sparing the pattern within
    the proposal's bounds; and those policies."""
    asking = [
        p
        for p in Policy.objects.filter(
            pk__in=suggestion.evidence.get("policies") or [], enabled=True
        ).order_by("pk")
        if drafts.asks_for_approval(p.text)
    ]
    if not asking:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "No enabled policy asks for approval of this pattern any more.",
            status_code=409,
        )
    bounds = suggestion.simulation.get("bounds") or {}
    condition = drafts.pattern_condition(
        role=suggestion.role.slug,
        unit=suggestion.business_unit.slug,
        operation=suggestion.operation.key,
        max_risk=bounds.get("max_risk") or 0,
        max_amount=bounds.get("max_amount"),
    )
    return drafts.approval_exempted(texts=[p.text for p in asking], condition=condition), asking


def suggestion_draft_policy(*, suggestion_id, by) -> Policy:
    """Open the proposal as a draft policy: saved disabled (validated like any policy), for
    a policy owner to review, enable, and disable the policies it replaces."""
    with transaction.atomic():
        suggestion = _open_locked(suggestion_id=suggestion_id, by=by)
        if suggestion.kind != SuggestionKind.POLICY:
            raise DomainError(
                ErrorCode.VALIDATION_FAILED,
                "This pattern waited for its risk, not for a policy: open it as a standing "
                "approval instead.",
                {"kind": suggestion.kind},
            )
        text, replaced = draft_policy_text(suggestion)
        names = ", ".join(f"“{p.name}”" for p in replaced)
        policy = policy_services.policy_save(
            name=f"Draft (suggestion {suggestion.pk}): {suggestion.operation.key} by "
            f"{suggestion.role.slug} in {suggestion.business_unit.slug}"[:160],
            text=text,
            description=(
                f"Replaces {names}: the same rules, except that {suggestion.role} agents of "
                f"{suggestion.business_unit} invoking {suggestion.operation.key} at risk up "
                f"to {(suggestion.simulation.get('bounds') or {}).get('max_risk')} no longer "
                "wait for a person. Enable this and disable the policies it replaces."
            ),
            enabled=False,
            by=by,
        )
        _close(suggestion, status=SuggestionStatus.DRAFTED, by=by, policy=policy)
    return policy
