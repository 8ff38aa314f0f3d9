"""The demo's people in the loop, so ``make run`` reaches a steady state (issue 24 item 8).

At about five actions a second the demo fleet sends people some 40 requests a minute. Two
things keep that within what a few approvers can handle, as they would in a real enterprise:

- a **standing approval** from the seed: finance's payments clerks may pay invoices up to
  2,000 EUR within the routine risk band without asking, up to 600 a day, for 7 days; and a
  history of purchase orders that people kept approving unchanged, from which the suggestions
  beat proposes a second standing approval for a risk officer to accept (``seed``);
- a **desk** of demo approvers who work the inbox at a human pace through the same services as
  the inbox page (``Desk``): each looks at their inbox every ``think`` seconds and decides one
  thing, a group of similar requests when one has formed (after reading its sample), else the
  riskiest single request. The risk officer on the desk decides the second stage of large
  payments; nobody on the desk decides rollout promotions or suggestions: those are left for
  the person trying the demo.
"""

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.utils import timezone

from agents.models import Role
from agents.portal_roles import PortalRole, group_name
from approvals import groups, selectors, services
from approvals.models import Channel, Verdict
from autonomy.errors import DomainError
from autonomy.models import Operation, StandingApproval
from autonomy.standing import services as standing_services

# (username, full name, portal role): the desk; approvers take first stages and single-stage
# requests, the risk officer second stages.
DESK = [
    ("ava.approver", "Ava Approver", PortalRole.APPROVER),
    ("ben.approver", "Ben Approver", PortalRole.APPROVER),
    ("rita.risk", "Rita Risk", PortalRole.RISK_OFFICER),
]
GROUP_AT = 3  # a group this large is decided as one, after reading its sample
REJECT_AT = 80  # the desk rejects a single request this risky
STANDING_REASON = (
    "Routine payments of the payments clerks: approved unchanged for weeks; large ones still "
    "go through two stages."
)


def _operation(key: str) -> Operation | None:
    connector, _, slug = key.partition(".")
    return Operation.objects.filter(connector__slug=connector, slug=slug).first()


def seed_desk() -> int:
    """The desk's people (no password: they only act through ``Desk``). Returns how many
    were made."""
    User = get_user_model()
    made = 0
    for username, name, role in DESK:
        user, created = User.objects.get_or_create(
            username=username,
            defaults={
                "first_name": name.split()[0],
                "last_name": name.split()[1],
                "email": f"{username}@example.com",
                "is_staff": True,
            },
        )
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            made += 1
        user.groups.add(Group.objects.get_or_create(name=group_name(role))[0])
    return made


def seed_standing() -> int:
    """The standing approval of the payments clerks' routine payments, granted by the desk's
    risk officer through the one grant service. Skipped once one exists."""
    operation = _operation("erp.pay-invoice")
    role = Role.objects.filter(slug="payments-clerk").first()
    officer = get_user_model().objects.filter(username="rita.risk").first()
    if operation is None or role is None or officer is None:
        return 0
    if StandingApproval.objects.filter(operation=operation, role=role).exists():
        return 0
    standing_services.standing_grant(
        by=officer, operation=operation, role=role, max_risk=54,
        max_amount=Decimal("2000"), daily_limit=600, days=7, reason=STANDING_REASON,
    )  # fmt: skip
    return 1


@dataclass
class Desk:
    """The demo approvers at a human pace; ``tick`` lets each one due decide one thing."""

    think_seconds: float = 10.0
    rng: random.Random = field(default_factory=random.Random)
    due: dict = field(default_factory=dict)  # username -> when they look next

    def people(self):
        return list(
            get_user_model()
            .objects.filter(username__in=[d[0] for d in DESK], is_active=True)
            .order_by("username")
        )

    def tick(self, *, now: datetime | None = None) -> list[str]:
        now = now or timezone.now()
        lines = []
        for person in self.people():
            if self.due.get(person.username, now) > now:
                continue
            jitter = self.rng.uniform(0.5, 1.5)
            self.due[person.username] = now + timedelta(seconds=self.think_seconds * jitter)
            line = self.work(person)
            if line:
                lines.append(line)
        return lines

    def work(self, person) -> str:
        """One look at the inbox: a group when one has formed, else the riskiest request."""
        grouped = groups.inbox_groups(user=person).groups
        for row in groups.groups_named(r for r in grouped[:10] if r["size"] >= GROUP_AT):
            if row["risk_max"] < REJECT_AT:
                outcome = services.approvals_decide_group(
                    approver=person, key=row["key"], verdict=Verdict.APPROVE,
                    channel=Channel.INBOX, until=row["newest"],
                    comment="Read the sample; routine for this role.",
                )  # fmt: skip
                return f"desk: {person.username} approved a group of {outcome.decided}"
        single = (
            selectors.inbox_for_user(user=person)
            .filter(promotion__isnull=True)
            .exclude(decisions__approver=person)
            .first()
        )
        if single is None:
            return ""
        verdict = Verdict.REJECT if single.risk_score >= REJECT_AT else Verdict.APPROVE
        if verdict == Verdict.APPROVE and self.rng.random() < 0.05:
            verdict = Verdict.REJECT  # people say no now and then
        try:
            services.approval_decide(
                request_id=single.pk, approver=person, verdict=verdict, channel=Channel.INBOX,
                comment="Checked against the order." if verdict == Verdict.APPROVE else
                "Not without a second look at the supplier.",
            )  # fmt: skip
        except DomainError as exc:  # someone else was faster, or separation of duties
            return f"desk: {person.username} could not decide {single.subject}: {exc.message}"
        return f"desk: {person.username} {verdict}d {single.subject} (risk {single.risk_score})"
