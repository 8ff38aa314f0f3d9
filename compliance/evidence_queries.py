"""The registry of evidence queries: each control's ``evidence_key`` names one, and each
counts, in one query, the records that prove the control for a period [start, end).

Counts only: the evidence pack carries the records themselves. A key the registry does not
know is refused by the admin form (``evidence_key_choices``) and counted as None.
"""

from collections.abc import Callable, Iterable
from datetime import datetime

from auditlog.models import LogEntry
from django.db.models import Q

from agents.models import Agent, Credential, DriftFlag
from approvals.models import ApprovalRequest, Decision
from autonomy.models import (
    ActionRequest,
    AuditRecord,
    ContentRule,
    Intervention,
    InterventionKind,
    Policy,
    PolicyVersion,
    RolloutEvent,
    Verdict,
)
from reviews import selectors as review_selectors

Query = Callable[[datetime, datetime], int]


def _audit_kinds(*kinds: str) -> Query:
    def count(start: datetime, end: datetime) -> int:
        return AuditRecord.objects.filter(
            kind__in=kinds, created_at__gte=start, created_at__lt=end
        ).count()

    return count


def _in_period(queryset, field: str = "created_at") -> Query:
    def count(start: datetime, end: datetime) -> int:
        return queryset.filter(**{f"{field}__gte": start, f"{field}__lt": end}).count()

    return count


def _standing(queryset) -> Query:
    """Rows in force at the period's end (configuration, not events)."""

    def count(start: datetime, end: datetime) -> int:
        return queryset.filter(created_at__lt=end).count()

    return count


def access_reviews(start: datetime, end: datetime) -> int:
    """Access reviews opened in the period (the evidence pack lists them)."""
    return review_selectors.reviews_for_period(start=start, end=end).count()


EVIDENCE_QUERIES: dict[str, tuple[str, Query]] = {
    "action_decisions": (
        "Gate decisions in the audit trail (kind action_decision)",
        _audit_kinds("action_decision"),
    ),
    "denied_actions": (
        "Actions the gate denied",
        _in_period(ActionRequest.objects.filter(verdict=Verdict.DENY)),
    ),
    "action_outcomes": (
        "Executed actions and their outcomes in the audit trail",
        _audit_kinds("action_outcome"),
    ),
    "policies_in_force": (
        "Enabled policies (Cedar) at the period's end",
        _standing(Policy.objects.filter(enabled=True)),
    ),
    "policy_changes": (
        "Policy versions recorded (immutable policy history)",
        _in_period(PolicyVersion.objects.all()),
    ),
    "content_rules": (
        "Enabled content rules at the period's end",
        _standing(ContentRule.objects.filter(enabled=True)),
    ),
    "approval_requests": (
        "Actions and promotions sent to people (approval requests opened)",
        _in_period(ApprovalRequest.objects.all()),
    ),
    "approval_decisions": (
        "Decisions people made on approval requests",
        _in_period(Decision.objects.all()),
    ),
    "interventions": (
        "Pauses, kills, quarantines, emergency stops and overrides",
        _in_period(Intervention.objects.all()),
    ),
    "emergency_stops": (
        "Emergency stops and their lifts",
        _in_period(
            Intervention.objects.filter(
                kind__in=[InterventionKind.EMERGENCY_STOP, InterventionKind.EMERGENCY_LIFT]
            )
        ),
    ),
    "overrides": (
        "Pending decisions overridden by a person",
        _in_period(Intervention.objects.filter(kind=InterventionKind.OVERRIDE)),
    ),
    "audit_records": (
        "Records appended to the tamper-evident audit trail",
        _in_period(AuditRecord.objects.all()),
    ),
    "registry_changes": (
        "Admin changes to agents, connectors, operations, grants and settings (django-auditlog)",
        _in_period(LogEntry.objects.all(), "timestamp"),
    ),
    "grant_changes": (
        "Grants and revocations of operations (audit kind grant)",
        _audit_kinds("grant"),
    ),
    "agents_registered": (
        "Agents in the registry at the period's end, each with an owner and a business unit",
        _standing(Agent.objects.all()),
    ),
    "credential_events": (
        "Agent credentials issued or revoked",
        lambda start, end: Credential.objects.filter(
            Q(created_at__gte=start, created_at__lt=end)
            | Q(revoked_at__gte=start, revoked_at__lt=end)
        ).count(),
    ),
    "drift_flags": (
        "Drift flags raised on agents' behaviour",
        _in_period(DriftFlag.objects.all()),
    ),
    "autonomy_changes": (
        "Autonomy level settings, standing approvals and rollout moves",
        _audit_kinds(
            "autonomy_setting_created",
            "autonomy_setting_deleted",
            "standing_granted",
            "standing_revoked",
        ),
    ),
    "rollout_events": (
        "Rollout promotions and demotions",
        _in_period(RolloutEvent.objects.all()),
    ),
    "memory_corrections": (
        "Corrections, deletions and purges of shared agent memory",
        _audit_kinds("memory_corrected", "memory_deleted", "memory_purged"),
    ),
    "evidence_exports": (
        "Evidence packs downloaded (audit kind evidence_pack_exported)",
        _audit_kinds("evidence_pack_exported"),
    ),
    "access_reviews": ("Access reviews opened in the period", access_reviews),
}


def evidence_key_choices() -> list[tuple[str, str]]:
    return [(key, f"{key}: {label}") for key, (label, _) in EVIDENCE_QUERIES.items()]


def evidence_counts(keys: Iterable[str], *, start: datetime, end: datetime) -> dict:
    """{key: count} for each distinct key (None for a key the registry does not know): one
    query per distinct key, however many controls share it."""
    return {
        key: EVIDENCE_QUERIES[key][1](start, end) if key in EVIDENCE_QUERIES else None
        for key in sorted(set(keys))
    }
