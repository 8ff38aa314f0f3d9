"""Applying a governance bundle: exactly what its plan shows, through the services that own
each object, in one transaction, refused when live governance moved since the plan."""

from dataclasses import dataclass

from django.db import transaction

from autonomy import audit
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import PolicyStoreState
from governance import selectors
from governance.plans import Change, Plan
from governance.sections import BY_NAME


@dataclass(frozen=True)
class Applied:
    plan: Plan
    changes: tuple[Change, ...]


def _refuse_unauthorised(*, user, changes: list[Change]) -> None:
    refused = sorted({c.section for c in changes if not BY_NAME[c.section].may_apply(user, c)})
    if refused or hasattr(user, "agent") or not getattr(user, "is_active", False):
        raise DomainError(
            ErrorCode.PERMISSION_DENIED,
            f"{getattr(user, 'username', user)} may not apply these sections: "
            f"{', '.join(refused) or 'any'}.",
            {"sections": refused},
            status_code=403,
        )


def governance_apply(
    *, files: dict[str, str], by, prune: bool = False, expect_live: str | None = None
) -> Applied:
    """Apply the bundle's plan. ``expect_live``: the live digest the reviewed plan was computed
    against; when live governance has another one now, nothing is written
    (``bundle_live_changed``). An invalid bundle writes nothing (``bundle_invalid``).
    Removals only with ``prune``. One audit record says who applied which bundle and how much
    it changed; each change writes its own through its service as well."""
    plan = selectors.bundle_plan(files=files)
    if not plan.valid:
        errors = {f"{c.section} {c.key}": list(c.errors) for c in plan.changes if c.errors}
        raise DomainError(
            ErrorCode.BUNDLE_INVALID,
            "The bundle is invalid; nothing was applied.",
            {"errors": errors},
        )
    expected = expect_live or plan.live_digest
    changes = plan.to_apply(prune=prune)
    _refuse_unauthorised(user=by, changes=changes)
    with transaction.atomic():
        # Policy writes move this row; holding it keeps them out until this apply commits.
        list(PolicyStoreState.objects.select_for_update().filter(pk=1))
        now = selectors.live_digest()
        if now != expected:
            raise DomainError(
                ErrorCode.BUNDLE_LIVE_CHANGED,
                "Live governance changed since the plan was made; plan again and review it.",
                {"planned_against": expected, "live": now},
                status_code=409,
            )
        for change in changes:
            BY_NAME[change.section].apply(change, by=by)
        audit.append(
            kind="governance_applied",
            actor=by.get_username(),
            payload={
                "bundle_digest": plan.bundle_digest,
                "live_digest_before": now,
                "sections": list(plan.sections),
                "prune": prune,
                "counts": plan.counts(prune=prune),
                "changes": [f"{c.op} {c.section} {c.key}" for c in changes][:500],
            },
        )
    return Applied(plan=plan, changes=tuple(changes))
