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
``Replay`` replays it over every recorded request of the pattern in the window, oldest
first: one that waited only for reasons the proposal waives, within its risk and amount
bounds and under its daily bound that day (UTC), would not have waited. A supervised level, a
workflow step's approval gate or a content rule would still have asked a person: a standing
approval waives the risk threshold and policy approval, never those.

``suggestions_refresh`` runs on beat: a constant number of queries whatever the number of
requests or patterns (aggregates for the counts and bounds, then the qualifying patterns'
requests streamed once through their replays, so memory grows with patterns, not requests),
one open suggestion per pattern (a database constraint), its figures refreshed while open.
A pattern dismissed or opened as a draft is not proposed again until a window has passed.
"""

import math
from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from functools import reduce
from operator import or_
from urllib.parse import urlencode

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Min, Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from approvals.models import Suggestion, SuggestionKind, SuggestionStatus
from autonomy import gate
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionRequest, HumanDecision, Policy
from autonomy.policy import drafts
from autonomy.policy import services as policy_services

# The reasons the gate gives for asking a person, and what each kind of proposal would have
# spared people: a standing approval what the gate lets one settle, a policy change only a
# policy's own request for approval.
ASKS_A_PERSON = gate.ASKS_A_PERSON
WAIVES = {
    SuggestionKind.STANDING: gate.STANDING_WAIVES,
    SuggestionKind.POLICY: frozenset({ErrorCode.POLICY_REQUIRES_APPROVAL}),
}
SAMPLES = 5
# The standing-approval grant form (``/inbox/standing/new/``), prefilled from GET parameters.
STANDING_FORM_PATH = "/inbox/standing/new/"


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


class Replay:
    """One proposal replayed over a pattern's requests, fed oldest first: how many would not
    have waited, why the others still would, and what people had answered to the ones let
    through (the rejected and changed ones are its cost)."""

    def __init__(self, *, waives: frozenset, bounds: Bounds):
        self.waives, self.bounds = waives, bounds
        self.waits: Counter = Counter()
        self.allowed: Counter = Counter()
        self.allowed_on: Counter = Counter()

    def add(self, r: Record) -> None:
        bounds = self.bounds
        if r.asks - self.waives:
            self.waits["other_reasons"] += 1
        elif r.risk_score > bounds.max_risk:
            self.waits["risk_above"] += 1
        elif r.amount is not None and (bounds.max_amount is None or r.amount > bounds.max_amount):
            self.waits["amount_above"] += 1
        elif bounds.daily_limit is not None and (
            self.allowed_on[r.created_at.date()] >= bounds.daily_limit
        ):
            self.waits["over_daily_limit"] += 1
        else:
            self.allowed_on[r.created_at.date()] += 1
            self.allowed[r.human_decision or "undecided"] += 1

    def result(self, *, days: int) -> dict:
        would_allow = sum(self.allowed.values())
        would_wait = sum(self.waits.values())
        return {
            "bounds": self.bounds.as_dict(),
            "replayed": would_allow + would_wait,
            "would_allow": would_allow,
            "would_wait": would_wait,
            "wait_reasons": {
                k: self.waits[k]
                for k in ("risk_above", "amount_above", "over_daily_limit", "other_reasons")
            },
            "would_allow_approved": self.allowed[HumanDecision.APPROVED],
            "would_allow_changed": self.allowed[HumanDecision.CHANGED],
            "would_allow_rejected": self.allowed[HumanDecision.REJECTED],
            "would_allow_undecided": self.allowed["undecided"],
            "per_day": round(would_allow / days, 2),
        }


class History:
    """One pattern's window, read once: both kinds of proposal replayed side by side (the
    kind is known only at the end), the sample ids and the policies that asked."""

    ONLY_POLICY = frozenset({ErrorCode.POLICY_REQUIRES_APPROVAL})

    def __init__(self, *, max_risk: int, max_amount, busiest_day: int):
        amount = math.ceil(max_amount) if max_amount is not None else None
        daily = math.ceil(busiest_day * settings.AUTONOMY_SUGGEST_HEADROOM)
        self.replays = {
            SuggestionKind.STANDING: Replay(
                waives=WAIVES[SuggestionKind.STANDING], bounds=Bounds(max_risk, amount, daily)
            ),
            SuggestionKind.POLICY: Replay(
                waives=WAIVES[SuggestionKind.POLICY], bounds=Bounds(max_risk, amount, None)
            ),
        }
        self.busiest_day = busiest_day
        self.samples: deque = deque(maxlen=SAMPLES)
        self.policies: set = set()
        self.only_policy = True

    def add(self, r: Record) -> None:
        for replay in self.replays.values():
            replay.add(r)
        if r.human_decision == HumanDecision.APPROVED:
            self.samples.append(r.pk)
            self.policies.update(r.policy_ids)
            self.only_policy = self.only_policy and r.asks == self.ONLY_POLICY and r.policy_ids

    @property
    def kind(self) -> str:
        """Policy when every approved-unchanged request waited only for a policy's approval."""
        if self.samples and self.only_policy:
            return SuggestionKind.POLICY
        return SuggestionKind.STANDING


def _pattern_key(operation_id, role_id, unit_id) -> str:
    return f"{operation_id}:{role_id}:{unit_id}"


def _asks(reasons) -> frozenset:
    codes = {r.get("code") for r in reasons or [] if isinstance(r, dict)}
    return frozenset(c for c in ASKS_A_PERSON if c in codes)


def _approval_policy_ids(policy_ids) -> tuple:
    """The permits that decided the request: the policy that asked is among them."""
    permits = (policy_ids or {}).get("permits") or []
    return tuple(sorted({p["policy_id"] for p in permits if p.get("policy_id") is not None}))


# --- the refresh ---------------------------------------------------------------------------

PATTERN = ("operation_id", "agent__role_id", "agent__business_unit_id")
APPROVED_ONLY = Q(human_decision=HumanDecision.APPROVED)


def _key(row) -> str:
    return _pattern_key(*(row[f] for f in PATTERN))


def _waited(since, until):
    """Actions that waited for people (an approval was opened) in the window."""
    return ActionRequest.objects.filter(
        approval__isnull=False, created_at__gte=since, created_at__lt=until
    )


def _qualifying(since, until) -> dict[str, dict]:
    """One aggregate over the window: the patterns over the thresholds, with their counts and
    the bounds of what people approved as asked."""
    rows = (
        _waited(since, until)
        .values(*PATTERN)
        .annotate(
            waited=Count("pk"),
            approved=Count("pk", filter=APPROVED_ONLY),
            changed=Count("pk", filter=Q(human_decision=HumanDecision.CHANGED)),
            rejected=Count("pk", filter=Q(human_decision=HumanDecision.REJECTED)),
            min_risk=Min("risk_score", filter=APPROVED_ONLY),
            max_risk=Max("risk_score", filter=APPROVED_ONLY),
            max_amount=Max("amount", filter=APPROVED_ONLY),
        )
        .filter(
            approved__gte=settings.AUTONOMY_SUGGEST_MIN_APPROVED,
            rejected__lte=settings.AUTONOMY_SUGGEST_MAX_REJECTED,
        )
        .order_by()
    )
    return {_key(row): row for row in rows}


def _match(patterns: dict[str, dict]) -> Q:
    return reduce(or_, (Q(**{f: row[f] for f in PATTERN}) for row in patterns.values()))


def _busiest_days(patterns: dict[str, dict], since, until) -> Counter:
    """Per pattern, the most requests approved as asked on one day (UTC)."""
    busiest: Counter = Counter()
    per_day = (
        _waited(since, until)
        .filter(_match(patterns), APPROVED_ONLY)
        .values(*PATTERN, day=TruncDate("created_at"))
        .annotate(n=Count("pk"))
        .order_by()
    )
    for row in per_day:
        key = _key(row)
        busiest[key] = max(busiest[key], row["n"])
    return busiest


def _replayed(patterns: dict[str, dict], since, until) -> dict[str, History]:
    """Every waited request of the given patterns, streamed once in time order through each
    pattern's replays: memory grows with the patterns, not with the requests."""
    busiest = _busiest_days(patterns, since, until)
    histories = {
        key: History(
            max_risk=row["max_risk"] or 0, max_amount=row["max_amount"], busiest_day=busiest[key]
        )
        for key, row in patterns.items()
    }
    rows = (
        _waited(since, until)
        .filter(_match(patterns))
        .order_by("created_at", "pk")
        .values_list(
            *PATTERN, "pk", "created_at", "risk_score", "amount", "reasons", "human_decision",
            "policy_ids",
        )
    )  # fmt: skip
    for op, role, unit, pk, at, risk, amount, reasons, said, policy_ids in rows.iterator(
        chunk_size=2000
    ):
        histories[_pattern_key(op, role, unit)].add(
            Record(
                pk=str(pk), created_at=at, risk_score=risk, amount=amount, asks=_asks(reasons),
                human_decision=said, policy_ids=_approval_policy_ids(policy_ids),
            )
        )  # fmt: skip
    return histories


def _figures(row: dict, history: History, *, days: int, since, until, inbox_total: int):
    kind = history.kind
    simulation = history.replays[kind].result(days=days)
    counted = row["approved"] + row["changed"] + row["rejected"]
    evidence = {
        "window_days": days,
        "since": since.isoformat(),
        "until": until.isoformat(),
        "waited": row["waited"],
        "approved": row["approved"],
        "changed": row["changed"],
        "rejected": row["rejected"],
        "undecided": row["waited"] - counted,
        "min_risk": row["min_risk"] or 0,
        "max_risk": row["max_risk"] or 0,
        "max_amount": None if row["max_amount"] is None else f"{Decimal(row['max_amount']):.2f}",
        "busiest_day": history.busiest_day,
        "samples": list(history.samples),
        "policies": sorted(history.policies),
    }
    return {
        "kind": kind,
        "evidence": evidence,
        "simulation": simulation,
        "per_day": simulation["per_day"],
        "inbox_share": round(simulation["would_allow"] / inbox_total, 4) if inbox_total else 0.0,
        "updated_at": until,
    }


def suggestions_refresh(*, now: datetime | None = None) -> dict[str, int]:
    """Propose, refresh or withdraw suggestions from the last window's history. Runs on beat;
    safe to run twice or at once (one open suggestion per pattern)."""
    now = now or timezone.now()
    days = settings.AUTONOMY_SUGGEST_WINDOW_DAYS
    since = now - timedelta(days=days)
    patterns = _qualifying(since, now)
    counts = {"proposed": 0, "refreshed": 0, "withdrawn": 0}
    with transaction.atomic():
        counts["withdrawn"] = (
            Suggestion.objects.filter(status=SuggestionStatus.OPEN)
            .exclude(pattern_key__in=patterns)
            .delete()[0]
        )
        known = list(Suggestion.objects.filter(pattern_key__in=patterns)) if patterns else []
        open_ = {s.pattern_key: s for s in known if s.status == SuggestionStatus.OPEN}
        resting = {s.pattern_key for s in known if s.status != SuggestionStatus.OPEN and
                   s.updated_at >= since}  # fmt: skip
        patterns = {k: row for k, row in patterns.items() if k not in resting}
        if not patterns:
            return counts
        inbox_total = _waited(since, now).count()
        histories = _replayed(patterns, since, now)
        new, changed = [], []
        for key, row in patterns.items():
            figures = _figures(row, histories[key], days=days, since=since, until=now,
                               inbox_total=inbox_total)  # fmt: skip
            suggestion = open_.get(key)
            if suggestion is None:
                new.append(
                    Suggestion(
                        pattern_key=key,
                        operation_id=row["operation_id"],
                        role_id=row["agent__role_id"],
                        business_unit_id=row["agent__business_unit_id"],
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
    return policy_services.may_change_policy(user=user)


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
    evidence = suggestion.evidence or {}
    params = {
        "operation": suggestion.operation.key,
        "role": suggestion.role.slug,
        "unit": suggestion.business_unit.slug,
        "max_risk": bounds.get("max_risk"),
        "max_amount": bounds.get("max_amount"),
        "daily_limit": bounds.get("daily_limit"),
        "days": settings.AUTONOMY_SUGGEST_STANDING_DAYS,
        # the form's ``source`` names an approval request; a suggestion says why in words
        "reason": (
            f"Suggestion #{suggestion.pk}: approved as asked {evidence.get('approved', 0)} "
            f"times and rejected {evidence.get('rejected', 0)} times in "
            f"{evidence.get('window_days')} days."
        ),
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
