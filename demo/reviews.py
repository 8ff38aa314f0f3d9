"""The demo's access reviews: a little history that gives the quarter's review something to
ask about in Finance and Procurement (two dormant agents, agents at work on some of what they
hold, an agent whose owner left, a credential never used and one about to expire), then the
current quarter's review of both units, open for a risk officer to answer."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.utils import timezone

from agents import services as agent_services
from agents.models import Agent, AgentStatus, BusinessUnit, Credential
from autonomy import grants
from autonomy.models import ActionRequest, ActionStatus, Operation, Verdict
from reviews import services as review_services
from reviews.models import AccessReview

UNITS = ("finance", "procurement")
AGED_DAYS = 200  # how long ago the reviewed demo agents were registered
OFFICER = "rita.risk"


def _history(agent, operation, at) -> ActionRequest:
    return ActionRequest(
        agent=agent, operation=operation, verdict=Verdict.ALLOW, status=ActionStatus.SUCCEEDED,
        created_at=at, decided_at=at, finished_at=at, risk_score=10, params={},
        reason="demo: access review history",
    )  # fmt: skip


def _unit_history(unit: BusinessUnit, *, now, by) -> None:
    """Age five quiet agents of the unit: two stay dormant (one acted 75 days ago), three
    acted this week on one of the operations they hold, so the rest shows as unused; the
    first of those also holds a grant of its own it never used, the last one's owner leaves.
    """
    acted = ActionRequest.objects.filter(agent=OuterRef("pk"))
    quiet = list(
        Agent.objects.select_related("role")
        .filter(business_unit=unit, status=AgentStatus.ACTIVE)
        .exclude(Exists(acted))
        .order_by("slug")[:5]
    )
    if len(quiet) < 5:
        return
    Agent.objects.filter(pk__in=[a.pk for a in quiet]).update(
        created_at=now - timedelta(days=AGED_DAYS)
    )
    rows = []
    for n, agent in enumerate(quiet):
        granted = list(grants.operations_granted(agent=agent).order_by("connector__slug", "slug"))
        if not granted:
            continue
        if n == 0:
            rows.append(_history(agent, granted[0], now - timedelta(days=75)))
        elif n >= 2:
            rows.extend(
                _history(agent, granted[0], now - timedelta(days=day, hours=n)) for day in (1, 3, 6)
            )
        if n == 2:  # given for a one-off job long ago, never used since
            spare = Operation.objects.exclude(pk__in=[op.pk for op in granted]).order_by("pk")
            spare = spare.first()
            if spare is not None:
                grants.grant(target=spare, to=agent, by=by)
    ActionRequest.objects.bulk_create(rows)
    # Credentials: one about to expire, one made long ago and never used.
    agent_services.credential_issue(
        agent=quiet[2], by=by, name="quarterly", expires_at=now + timedelta(days=12)
    )
    never, _ = agent_services.credential_issue(agent=quiet[3], by=by, name="legacy-batch")
    Credential.objects.filter(pk=never.pk).update(created_at=now - timedelta(days=120))
    _orphan(quiet[4], by=by)


def _orphan(agent: Agent, *, by) -> None:
    """The agent's owner leaves the company: the agent goes to a person who is then
    deactivated (through the registry, so owner permissions move with it)."""
    User = get_user_model()
    departed, _ = User.objects.get_or_create(
        username=f"departed.{agent.business_unit.slug}",
        defaults={"first_name": "Dana", "last_name": "Left", "email": "departed@example.com"},
    )
    agent_services.agent_update(agent=agent, by=by, owner=departed)
    User.objects.filter(pk=departed.pk).update(is_active=False)


def seed_reviews() -> int:
    """Seed the history and open the current quarter's reviews; skipped once any review
    exists (idempotent). Returns how many reviews were opened."""
    if AccessReview.objects.exists():
        return 0
    officer = get_user_model().objects.filter(username=OFFICER).first()
    if officer is None:  # the desk's risk officer (demo.approvals) moves the orphan's owner
        return 0
    now = timezone.now()
    opened = 0
    for unit in BusinessUnit.objects.filter(slug__in=UNITS).order_by("name"):
        with transaction.atomic():
            _unit_history(unit, now=now, by=officer)
        review_services.review_open(unit=unit, period=review_services.period_of(now), now=now)
        opened += 1
    return opened
