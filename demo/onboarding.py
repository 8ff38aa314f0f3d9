"""Demo data for onboarding through approval: each business unit gets its owner (its first
demo owner), and one agent of IT waits for its unit's owner and security to approve its
registration, so the inbox shows a registry change from the first page."""

from django.db import transaction

from agents import services
from agents.models import Agent, BusinessUnit, Role
from demo.registry import OWNERS

WAITING_SLUG = "access-reviewer-pilot"


def seed_onboarding() -> int:
    """Idempotent. Returns how many units got an owner plus the pending agent if made now."""
    from django.contrib.auth import get_user_model

    User = get_user_model()
    made = 0
    first_owner: dict[str, str] = {}
    for username, _first, _last, unit_slug in OWNERS:
        first_owner.setdefault(unit_slug, username)
    with transaction.atomic():
        for unit in BusinessUnit.objects.filter(slug__in=first_owner, owner=None):
            unit.owner = User.objects.filter(username=first_owner[unit.slug]).first()
            if unit.owner is not None:
                unit.save(update_fields=["owner"])
                made += 1
        it = BusinessUnit.objects.filter(slug="it").first()
        role = Role.objects.filter(slug="access-provisioner").first() or Role.objects.first()
        developer = User.objects.filter(username="eva.novak").first()
        if it is None or role is None or developer is None:
            return made
        if not Agent.objects.filter(slug=WAITING_SLUG).exists():
            services.agent_register(
                name="Access reviewer (pilot)",
                slug=WAITING_SLUG,
                description="Reviews who holds which access; waits for approval to start.",
                owner=developer,
                business_unit=it,
                role=role,
                by=developer,
            )
            made += 1
    return made
