"""Reading policy history: a policy's versions, one version, the diff between two, and the
versions in force at a moment (the evidence pack asks that one)."""

import difflib
from dataclasses import dataclass
from datetime import datetime

from django.db.models import QuerySet

from autonomy.models import Policy, PolicyChange, PolicySetVersion, PolicyVersion


def policy_versions(policy: Policy | int) -> QuerySet[PolicyVersion]:
    """A policy's versions, newest first; ``policy`` may be the id of a deleted one."""
    key = policy if isinstance(policy, int) else policy.pk
    return PolicyVersion.objects.filter(policy_key=key).select_related("author").order_by("-number")


def policy_version(policy_id: int, number: int) -> PolicyVersion | None:
    """The version ``number`` of the policy with id ``policy_id`` (deleted or not), or None."""
    return (
        PolicyVersion.objects.filter(policy_key=policy_id, number=number)
        .select_related("author", "policy")
        .first()
    )


def previous_version(version: PolicyVersion) -> PolicyVersion | None:
    """The version just before ``version`` (versions can be missing before history began)."""
    return (
        PolicyVersion.objects.filter(policy_key=version.policy_key, number__lt=version.number)
        .order_by("-number")
        .first()
    )


def deleted_policies() -> QuerySet[PolicyVersion]:
    """The closing version of each deleted policy, newest first: where their history is."""
    return PolicyVersion.objects.filter(change=PolicyChange.DELETED).order_by("-created_at")


def policy_list() -> QuerySet[Policy]:
    return Policy.objects.select_related("author").order_by("name")


def policy_set_at(at: datetime | None = None) -> PolicySetVersion | None:
    """The policy-set version in force at ``at`` (now when None), or None before history."""
    found = PolicySetVersion.objects.order_by("-number")
    if at is not None:
        found = found.filter(created_at__lte=at)
    return found.first()


def policies_in_force(at: datetime | None = None) -> list[PolicyVersion]:
    """The enabled policy versions in force at ``at`` (now when None), by policy id: two
    queries, whatever the number of policies."""
    policy_set = policy_set_at(at)
    if policy_set is None:
        return []
    wanted = {(int(pk), int(n)) for pk, n in policy_set.policies.items()}
    rows = PolicyVersion.objects.filter(
        policy_key__in={pk for pk, _ in wanted}, number__in={n for _, n in wanted}
    ).order_by("policy_key")
    return [v for v in rows if (v.policy_key, v.number) in wanted]


@dataclass(frozen=True)
class DiffLine:
    kind: str  # "add", "remove", "same", "hunk"
    text: str


def version_diff(*, version: PolicyVersion, against: PolicyVersion | None) -> list[DiffLine]:
    """A unified diff of the text from ``against`` to ``version``, as lines a template
    escapes and colours; every line is "add" when there is nothing to compare against."""
    before = against.text.splitlines() if against is not None else []
    after = version.text.splitlines()
    lines = []
    for line in difflib.unified_diff(before, after, lineterm="", n=3):
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            lines.append(DiffLine("hunk", line))
        elif line.startswith("+"):
            lines.append(DiffLine("add", line[1:]))
        elif line.startswith("-"):
            lines.append(DiffLine("remove", line[1:]))
        else:
            lines.append(DiffLine("same", line[1:]))
    return lines
