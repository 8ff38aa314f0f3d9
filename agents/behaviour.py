"""Behaviour monitoring: learn what an agent normally does, flag what it has never done.

``baseline_learn`` aggregates the agent's action history (two grouped queries, whatever its
size); ``drift_check`` compares the last hour with the baseline in three queries and raises
``DriftFlag`` rows with their evidence; ``flag_review`` confirms or dismisses a flag, and a
dismissal teaches the baseline to accept that behaviour. A unit with
``auto_quarantine_on_drift`` has its agent quarantined by the first new flag.
"""

import math
import statistics
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Q
from django.db.models.functions import ExtractHour, TruncHour
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent, AgentBaseline, AgentStatus, DriftFlag, DriftKind, FlagStatus
from autonomy import audit
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import (
    ActionRequest,
    DataClass,
    Intervention,
    InterventionKind,
    InterventionScope,
    Verdict,
)

DATA_CLASS_RANK = {
    DataClass.PUBLIC: 0,
    DataClass.INTERNAL: 1,
    DataClass.CONFIDENTIAL: 2,
    DataClass.RESTRICTED: 3,
}
FLAG_POINTS = 10
# The detection windows and thresholds. A burst is judged over BURST_WINDOW; connectors,
# hours and data classes over LOOKBACK (a sweep that ran late still sees them).
LOOKBACK = timedelta(minutes=60)
BURST_WINDOW = timedelta(minutes=10)
RATE_FACTOR = 3.0
RATE_FLOOR = 20  # actions in BURST_WINDOW below which no rate is a spike
DENIAL_BURST_MIN = 5  # denials in BURST_WINDOW
DENIAL_RATIO_FACTOR = 3.0
DENIAL_RATIO_FLOOR = 0.5
UNUSUAL_HOUR_SHARE = 0.01  # an hour holding less than this share of the baseline is unusual
MIN_SAMPLE = 20  # below this many actions a baseline says too little to judge hours and rates


def _percentile(values: list[int], share: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)])


@transaction.atomic
def baseline_learn(
    *, agent: Agent, window_days: int = 14, until: datetime | None = None
) -> AgentBaseline:
    """(Re)learn the agent's baseline from its actions in the ``window_days`` before ``until``."""
    until = until or timezone.now()
    history = ActionRequest.objects.filter(
        agent=agent, created_at__gte=until - timedelta(days=window_days), created_at__lt=until
    )
    per_operation = history.values(
        "operation__connector__slug", "operation__slug", "operation__data_class"
    ).annotate(n=Count("id"), denied=Count("id", filter=Q(verdict=Verdict.DENY)))
    connectors: dict[str, int] = {}
    operations: dict[str, int] = {}
    total = denied = 0
    top_class = ""
    for row in per_operation:
        slug = row["operation__connector__slug"]
        connectors[slug] = connectors.get(slug, 0) + row["n"]
        operations[f"{slug}.{row['operation__slug']}"] = row["n"]
        total += row["n"]
        denied += row["denied"]
        if DATA_CLASS_RANK.get(row["operation__data_class"], 0) >= DATA_CLASS_RANK.get(
            top_class, -1
        ):
            top_class = row["operation__data_class"]
    per_hour = (
        history.annotate(bucket=TruncHour("created_at")).values("bucket").annotate(n=Count("id"))
    )
    hours = [0] * 24
    active_hours: list[int] = []
    for row in per_hour.order_by():
        hours[row["bucket"].hour] += row["n"]
        active_hours.append(row["n"])
    existing = AgentBaseline.objects.filter(agent=agent).values_list("accepted", flat=True).first()
    baseline, _ = AgentBaseline.objects.update_or_create(
        agent=agent,
        defaults=dict(
            connectors=connectors,
            operations=operations,
            hours=hours,
            rate_mean=statistics.fmean(active_hours) if active_hours else 0.0,
            rate_stdev=statistics.pstdev(active_hours) if active_hours else 0.0,
            rate_p95=_percentile(active_hours, 0.95),
            denial_ratio=denied / total if total else 0.0,
            max_data_class=top_class,
            sample_size=total,
            window_days=window_days,
            accepted=existing or {},
            learned_at=until,
        ),
    )
    return baseline


# --- checking -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    kind: str
    subject: str
    evidence: dict


def _recent(agent: Agent, now: datetime) -> list[dict]:
    """The last hour of the agent, grouped by connector, data class and hour: one query."""
    burst_from = now - BURST_WINDOW
    return list(
        ActionRequest.objects.filter(
            agent=agent, created_at__gte=now - LOOKBACK, created_at__lte=now
        )
        .values("operation__connector__slug", "operation__data_class")
        .annotate(
            hour=ExtractHour("created_at"),
            total=Count("id"),
            burst=Count("id", filter=Q(created_at__gte=burst_from)),
            burst_denied=Count("id", filter=Q(created_at__gte=burst_from, verdict=Verdict.DENY)),
        )
        .order_by()
    )


def rate_ceiling(baseline: AgentBaseline) -> float:
    """Actions in a burst window above which the rate is a spike."""
    per_window = baseline.rate_p95 * (BURST_WINDOW / timedelta(hours=1))
    accepted = float(baseline.accepted.get("rate", 0))
    return max(RATE_FACTOR * per_window, RATE_FLOOR, accepted)


def _findings(baseline: AgentBaseline, rows: list[dict]) -> list[Finding]:
    accepted = baseline.accepted
    known_connectors = set(baseline.connectors) | set(accepted.get("connectors", []))
    known_hours = {int(h) for h in accepted.get("hours", [])}
    top_rank = max(
        DATA_CLASS_RANK.get(baseline.max_data_class, -1),
        DATA_CLASS_RANK.get(accepted.get("data_class", ""), -1),
    )
    by_connector: dict[str, int] = {}
    by_class: dict[str, int] = {}
    by_hour: dict[int, int] = {}
    burst = burst_denied = 0
    for row in rows:
        slug, dclass = row["operation__connector__slug"], row["operation__data_class"]
        by_connector[slug] = by_connector.get(slug, 0) + row["total"]
        by_class[dclass] = by_class.get(dclass, 0) + row["total"]
        by_hour[row["hour"]] = by_hour.get(row["hour"], 0) + row["total"]
        burst += row["burst"]
        burst_denied += row["burst_denied"]

    found: list[Finding] = []
    window = int(LOOKBACK.total_seconds() // 60)
    # A baseline of a few actions (a new agent) says nothing about what is new or unusual.
    enough = baseline.sample_size >= MIN_SAMPLE
    for slug, count in sorted(by_connector.items()) if enough else ():
        if slug not in known_connectors:
            found.append(Finding(DriftKind.FIRST_CONNECTOR, slug, {
                "connector": slug, "actions": count, "window_minutes": window,
                "baseline_connectors": sorted(baseline.connectors),
            }))  # fmt: skip
    for dclass, count in sorted(by_class.items()) if enough else ():
        if DATA_CLASS_RANK.get(dclass, 3) > top_rank:
            found.append(Finding(DriftKind.DATA_CLASS_ESCALATION, dclass, {
                "data_class": dclass, "actions": count, "window_minutes": window,
                "baseline_max_data_class": baseline.max_data_class or None,
            }))  # fmt: skip
    if enough:
        for hour, count in sorted(by_hour.items()):
            share = baseline.hours[hour] / baseline.sample_size if baseline.hours else 0.0
            if share < UNUSUAL_HOUR_SHARE and hour not in known_hours:
                found.append(Finding(DriftKind.UNUSUAL_HOUR, f"{hour:02d}", {
                    "hour_utc": hour, "actions": count, "baseline_actions_at_hour":
                    baseline.hours[hour], "baseline_share": round(share, 4),
                    "baseline_sample": baseline.sample_size,
                }))  # fmt: skip
    burst_minutes = int(BURST_WINDOW.total_seconds() // 60)
    ceiling = rate_ceiling(baseline)
    if burst > ceiling:
        found.append(Finding(DriftKind.RATE_SPIKE, "", {
            "actions": burst, "window_minutes": burst_minutes, "ceiling": round(ceiling, 1),
            "baseline_p95_per_hour": baseline.rate_p95,
            "baseline_mean_per_hour": round(baseline.rate_mean, 2),
        }))  # fmt: skip
    if burst_denied >= max(DENIAL_BURST_MIN, int(accepted.get("denials", 0)) + 1):
        ratio = burst_denied / burst if burst else 0.0
        limit = max(DENIAL_RATIO_FLOOR, DENIAL_RATIO_FACTOR * baseline.denial_ratio)
        if ratio >= limit:
            found.append(Finding(DriftKind.DENIAL_BURST, "", {
                "denials": burst_denied, "actions": burst, "window_minutes": burst_minutes,
                "ratio": round(ratio, 3), "ratio_limit": round(limit, 3),
                "baseline_denial_ratio": round(baseline.denial_ratio, 4),
            }))  # fmt: skip
    return found


def drift_check(*, agent: Agent, now: datetime | None = None) -> list[DriftFlag]:
    """Compare the agent's last hour with its baseline; returns the flags newly raised.

    Three reads (baseline, recent activity, recent flags) whatever the history's size. An
    agent without a baseline is not judged: ``learn_baselines`` gives it one first.
    """
    now = now or timezone.now()
    baseline = AgentBaseline.objects.filter(agent=agent).first()
    if baseline is None:
        return []
    rows = _recent(agent, now)
    if not rows:
        return []
    findings = _findings(baseline, rows)
    if not findings:
        return []
    # Open, confirmed (a person knows), or raised within the hour: not raised again.
    seen = set(
        DriftFlag.objects.filter(agent=agent)
        .filter(
            Q(status__in=[FlagStatus.OPEN, FlagStatus.CONFIRMED])
            | Q(created_at__gte=now - LOOKBACK)
        )
        .values_list("kind", "subject")
    )
    raised = []
    for finding in findings:
        if (finding.kind, finding.subject) in seen:
            continue
        flag = _raise(agent=agent, finding=finding, now=now)
        if flag is not None:
            raised.append(flag)
    if raised and agent.business_unit.auto_quarantine_on_drift:
        _auto_quarantine(agent=agent, flags=raised)
    return raised


def flag_raise(
    *, agent: Agent, kind: str, subject: str, evidence: dict, now: datetime | None = None
) -> DriftFlag | None:
    """Raise one flag seen outside the baseline comparison (a result over its declared
    bound, ``autonomy.content.results``), in the caller's transaction; None when the same
    flag is already open. A unit with ``auto_quarantine_on_drift`` quarantines the agent."""
    flag = _raise(agent=agent, finding=Finding(kind, subject, evidence), now=now or timezone.now())
    if flag is not None and agent.business_unit.auto_quarantine_on_drift:
        _auto_quarantine(agent=agent, flags=[flag])
    return flag


def _raise(*, agent: Agent, finding: Finding, now: datetime) -> DriftFlag | None:
    try:
        with transaction.atomic():
            flag = DriftFlag.objects.create(
                agent=agent, kind=finding.kind, subject=finding.subject,
                evidence=finding.evidence, score=FLAG_POINTS, created_at=now,
            )  # fmt: skip
            audit.append(
                kind="drift.flag_raised",
                actor="system:drift",
                agent_id=agent.pk,
                payload={
                    "flag_id": flag.pk, "kind": flag.kind, "subject": flag.subject,
                    "evidence": flag.evidence,
                },
            )  # fmt: skip
    except IntegrityError:  # a concurrent sweep raised the same open flag first
        return None
    return flag


def _auto_quarantine(*, agent: Agent, flags: list[DriftFlag]) -> None:
    current = Agent.objects.filter(pk=agent.pk).values_list("status", flat=True).first()
    if current not in (AgentStatus.ACTIVE, AgentStatus.PAUSED):
        return
    names = ", ".join(str(flag) for flag in flags)
    reason = f"auto-quarantine on drift: {names}"[:500]
    with transaction.atomic():
        agent_services.agent_quarantine(agent=agent, by=None, reason=reason)
        Intervention.objects.create(
            kind=InterventionKind.QUARANTINE,
            scope=InterventionScope.AGENT,
            agent=agent,
            business_unit=agent.business_unit,
            reason=reason,
            details={"flags": [flag.pk for flag in flags], "automatic": True},
        )
        audit.append(
            kind="agent.auto_quarantined",
            actor="system:drift",
            agent_id=agent.pk,
            payload={"reason": reason, "flags": [flag.pk for flag in flags]},
        )
    agent.status = AgentStatus.QUARANTINED


# --- review ---------------------------------------------------------------------------------


def _accept(baseline: AgentBaseline, flag: DriftFlag) -> None:
    """Teach the baseline that what the flag saw is fine."""
    accepted = dict(baseline.accepted)
    evidence = flag.evidence

    def add(key: str, value) -> None:
        accepted[key] = sorted({*accepted.get(key, []), value})

    if flag.kind == DriftKind.FIRST_CONNECTOR:
        add("connectors", flag.subject)
    elif flag.kind == DriftKind.UNUSUAL_HOUR:
        add("hours", int(flag.subject))
    elif flag.kind == DriftKind.DATA_CLASS_ESCALATION:
        if DATA_CLASS_RANK.get(flag.subject, 0) > DATA_CLASS_RANK.get(
            accepted.get("data_class", ""), -1
        ):
            accepted["data_class"] = flag.subject
    elif flag.kind == DriftKind.RATE_SPIKE:
        accepted["rate"] = max(float(accepted.get("rate", 0)), evidence.get("actions", 0) * 1.5)
    elif flag.kind == DriftKind.DENIAL_BURST:
        accepted["denials"] = max(int(accepted.get("denials", 0)), evidence.get("denials", 0))
    baseline.accepted = accepted
    baseline.save(update_fields=["accepted"])


def flag_review(*, flag: DriftFlag, by, verdict: str, note: str = "") -> DriftFlag:
    """Confirm or dismiss an open flag. A dismissal feeds back into the baseline."""
    if verdict not in ("confirm", "dismiss"):
        raise DomainError(
            ErrorCode.VALIDATION_FAILED, "The verdict is confirm or dismiss.", {"verdict": verdict}
        )
    with transaction.atomic():
        locked = DriftFlag.objects.select_for_update().select_related("agent").get(pk=flag.pk)
        if locked.status != FlagStatus.OPEN:
            raise DomainError(
                ErrorCode.ILLEGAL_TRANSITION,
                "This flag has been reviewed already.",
                {"status": locked.status},
            )
        locked.status = FlagStatus.CONFIRMED if verdict == "confirm" else FlagStatus.DISMISSED
        locked.reviewed_by = by
        locked.reviewed_at = timezone.now()
        locked.review_note = note[:2000]
        locked.save(update_fields=["status", "reviewed_by", "reviewed_at", "review_note"])
        if locked.status == FlagStatus.DISMISSED:
            baseline = AgentBaseline.objects.select_for_update().filter(agent=locked.agent).first()
            if baseline is not None:
                _accept(baseline, locked)
        audit.append(
            kind="drift.flag_reviewed",
            actor=by.get_username() if by is not None else "",
            agent_id=locked.agent_id,
            payload={
                "flag_id": locked.pk, "kind": locked.kind, "subject": locked.subject,
                "verdict": locked.status, "note": locked.review_note,
            },
        )  # fmt: skip
    return locked


def agents_recently_active(*, minutes: int = 10, limit: int = 500) -> list:
    """Ids of agents (not quarantined or retired) that acted in the last ``minutes``."""
    since = timezone.now() - timedelta(minutes=minutes)
    return list(
        ActionRequest.objects.filter(created_at__gte=since)
        .exclude(agent__status__in=[AgentStatus.QUARANTINED, AgentStatus.RETIRED])
        .values_list("agent_id", flat=True)
        .distinct()
        .order_by()[:limit]
    )
