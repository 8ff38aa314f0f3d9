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
from django.db import transaction
from django.utils import timezone

from agents.models import Agent, AgentStatus, Role
from agents.portal_roles import PortalRole, group_name
from approvals import groups, selectors, services
from approvals.models import ApprovalRequest, ApprovalStatus, Channel, Decision, Verdict
from autonomy.errors import DomainError
from autonomy.models import StandingApproval
from autonomy.selectors import operation_by_key
from autonomy.standing import services as standing_services
from demo.fleet import SUPPLIERS

# (username, full name, portal role): the desk; approvers take first stages and single-stage
# requests, the risk officer second stages.
DESK = [
    ("ava.approver", "Ava Approver", PortalRole.APPROVER),
    ("ben.approver", "Ben Approver", PortalRole.APPROVER),
    ("rita.risk", "Rita Risk", PortalRole.RISK_OFFICER),
]
GROUP_AT = 3  # a group this large is decided as one, after reading its sample
REJECT_AT = 80  # the desk rejects a single request this risky
DOUBT_AT = 55  # ... and one in ten from here (large amounts): never the routine band, whose
# patterns the suggestions count
HISTORY_REASON = "demo: two days of purchase orders people approved as asked"
STANDING_REASON = (
    "Routine payments of the payments clerks: approved unchanged for weeks; large ones still "
    "go through two stages."
)


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


HISTORY_HOURS = 50  # purchase orders approved as asked, from 50 hours ago to 2 hours ago, at
HISTORY = 600  # about the pace of the demo fleet's buyers on a working day


def seed_history() -> int:
    """Procurement's purchase orders that people kept approving as asked over two days
    (written directly with their past timestamps, as ``demo.drift`` does: a demo's past, not
    a decision), so the suggestions beat has a pattern to propose from the first refresh.
    Skipped once written. Returns how many requests it wrote."""
    from autonomy.models import ActionRequest, ActionStatus, HumanDecision
    from autonomy.models import Verdict as Gate

    operation = operation_by_key(key="erp.create-purchase-order")
    buyers = list(
        Agent.objects.filter(
            role__slug="po-buyer", business_unit__slug="procurement", status=AgentStatus.ACTIVE
        ).order_by("slug")[:12]
    )
    User = get_user_model()
    deciders = list(User.objects.filter(username__in=["ava.approver", "ben.approver"]))
    if operation is None or not buyers or not deciders:
        return 0
    if ActionRequest.objects.filter(reason=HISTORY_REASON).exists():
        return 0
    approvers = Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0]
    now = timezone.now()
    actions, requests, decisions = [], [], []
    for n in range(HISTORY):
        at = now - timedelta(hours=HISTORY_HOURS) + timedelta(minutes=n * 48 * 60 // HISTORY)
        agent = buyers[n % len(buyers)]
        decided = at + timedelta(minutes=3 + n % 17)
        action = ActionRequest(
            agent=agent, operation=operation, verdict=Gate.NEEDS_APPROVAL,
            status=ActionStatus.SUCCEEDED, created_at=at, decided_at=at, started_at=decided,
            finished_at=decided + timedelta(seconds=2), risk_score=50 + n % 5,
            risk_factors=[], policy_ids={},
            reasons=[{"code": "risk_needs_approval", "message": "Risk at or above "
                      "Procurement's approval threshold 50.", "details": {}},
                     {"code": "approval_granted", "message": "demo: approved as asked",
                      "details": {}}],
            params={"supplier": SUPPLIERS[n % len(SUPPLIERS)], "amount": 300 + 91 * n % 5600},
            amount=Decimal(300 + 91 * n % 5600), reason=HISTORY_REASON,
            human_decision=HumanDecision.APPROVED,
        )  # fmt: skip
        actions.append(action)
        request = ApprovalRequest(
            action=action, agent=agent, business_unit=agent.business_unit,
            subject=f"{agent.name}: {operation.key}", risk_score=action.risk_score,
            approver_group=approvers, quorum=1, approvals=1, status=ApprovalStatus.APPROVED,
            expires_at=at + timedelta(days=1), decided_at=decided,
        )  # fmt: skip
        requests.append(request)
        decisions.append(
            Decision(
                request=request,
                approver=deciders[n % len(deciders)],
                verdict=Verdict.APPROVE,
                channel=Channel.INBOX,
                comment="Matches the order.",
            )  # fmt: skip
        )
    with transaction.atomic():
        ActionRequest.objects.bulk_create(actions, batch_size=500)
        ApprovalRequest.objects.bulk_create(requests, batch_size=500)
        Decision.objects.bulk_create(decisions, batch_size=500)
        # auto_now_add stamped them now: they were opened when their action waited, and
        # decided when their request was
        for request in requests:
            request.created_at = request.action.created_at
        for decision in decisions:
            decision.created_at = decision.request.decided_at
        ApprovalRequest.objects.bulk_update(requests, ["created_at"], batch_size=500)
        Decision.objects.bulk_update(decisions, ["created_at"], batch_size=500)
    return len(actions)


def seed_standing() -> int:
    """The standing approval of the payments clerks' routine payments, granted by the desk's
    risk officer through the one grant service. Skipped once one exists."""
    operation = operation_by_key(key="erp.pay-invoice")
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
            .filter(action__isnull=False)  # promotions and registry changes wait for people
            .exclude(decisions__approver=person)
            .first()
        )
        if single is None:
            return ""
        verdict = Verdict.REJECT if single.risk_score >= REJECT_AT else Verdict.APPROVE
        if single.risk_score >= DOUBT_AT and self.rng.random() < 0.1:
            verdict = Verdict.REJECT  # people say no to a large one now and then
        try:
            services.approval_decide(
                request_id=single.pk, approver=person, verdict=verdict, channel=Channel.INBOX,
                comment="Checked against the order." if verdict == Verdict.APPROVE else
                "Not without a second look at the supplier.",
            )  # fmt: skip
        except DomainError as exc:  # someone else was faster, or separation of duties
            return f"desk: {person.username} could not decide {single.subject}: {exc.message}"
        return f"desk: {person.username} {verdict}d {single.subject} (risk {single.risk_score})"
