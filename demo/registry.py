"""Demo data for the embedded default: a realistic registry that ``seed_demo`` fills.

Everything goes through the same services a person would use, so the demo has real history.
"""

import random

from django.contrib.auth import get_user_model
from django.db import transaction

from agents import services
from agents.models import Agent, BusinessUnit, RiskTier, Role

User = get_user_model()

BUSINESS_UNITS = [
    ("Finance", "finance", "Accounts payable and receivable, treasury, close."),
    ("Procurement", "procurement", "Suppliers, purchase orders, contracts."),
    ("Human Resources", "hr", "Hiring, onboarding, payroll questions."),
    ("Customer Operations", "customer-ops", "Support, onboarding and retention."),
    ("IT", "it", "Service desk, incidents, access management."),
    ("Legal", "legal", "Contract review and compliance."),
]

# slug, name, description, default risk tier, business units that use it
ROLES = [
    (
        "invoice-processor",
        "Invoice processor",
        "Extracts, matches and posts invoices.",
        RiskTier.HIGH,
        ["finance"],
    ),
    (
        "payments-clerk",
        "Payments clerk",
        "Prepares payment runs for approval.",
        RiskTier.HIGH,
        ["finance"],
    ),
    (
        "po-buyer",
        "Purchase-order buyer",
        "Raises and amends purchase orders.",
        RiskTier.HIGH,
        ["procurement"],
    ),
    (
        "supplier-onboarder",
        "Supplier onboarder",
        "Collects supplier documents and checks.",
        RiskTier.MEDIUM,
        ["procurement"],
    ),
    (
        "hr-assistant",
        "HR assistant",
        "Answers policy questions, drafts letters.",
        RiskTier.MEDIUM,
        ["hr"],
    ),
    (
        "support-agent",
        "Support agent",
        "Answers customers and updates CRM cases.",
        RiskTier.MEDIUM,
        ["customer-ops"],
    ),
    (
        "onboarding-agent",
        "Customer onboarding agent",
        "Verifies identity and sets up accounts.",
        RiskTier.HIGH,
        ["customer-ops"],
    ),
    (
        "incident-triager",
        "Incident triager",
        "Classifies, enriches and routes incidents.",
        RiskTier.MEDIUM,
        ["it"],
    ),
    (
        "access-provisioner",
        "Access provisioner",
        "Grants and revokes system access.",
        RiskTier.CRITICAL,
        ["it"],
    ),
    (
        "contract-reviewer",
        "Contract reviewer",
        "Flags risky clauses for lawyers.",
        RiskTier.LOW,
        ["legal"],
    ),
    (
        "data-analyst",
        "Data analyst",
        "Read-only reporting over the warehouse.",
        RiskTier.LOW,
        ["finance", "procurement", "customer-ops"],
    ),
]

OWNERS = [
    ("dana.ross", "Dana", "Ross", "finance"),
    ("li.wei", "Li", "Wei", "finance"),
    ("marco.bianchi", "Marco", "Bianchi", "procurement"),
    ("sara.olsen", "Sara", "Olsen", "procurement"),
    ("priya.nair", "Priya", "Nair", "hr"),
    ("tom.becker", "Tom", "Becker", "customer-ops"),
    ("amara.okafor", "Amara", "Okafor", "customer-ops"),
    ("jon.kim", "Jon", "Kim", "it"),
    ("eva.novak", "Eva", "Novak", "it"),
    ("lucas.martin", "Lucas", "Martin", "legal"),
]


def seed(*, agents: int = 1000, seed: int = 7) -> dict[str, int]:
    """Create what is missing; running it twice changes nothing. Returns counts created."""
    rng = random.Random(seed)
    created = {"business_units": 0, "roles": 0, "owners": 0, "agents": 0}
    with transaction.atomic():
        units = {}
        for name, slug, description in BUSINESS_UNITS:
            unit = BusinessUnit.objects.filter(slug=slug).first()
            if unit is None:
                unit = services.business_unit_create(name=name, slug=slug, description=description)
                created["business_units"] += 1
            units[slug] = unit
        roles = {}
        for slug, name, description, tier, _units in ROLES:
            role = Role.objects.filter(slug=slug).first()
            if role is None:
                role = services.role_create(
                    name=name, slug=slug, description=description, default_risk_tier=tier
                )
                created["roles"] += 1
            roles[slug] = role
        owners_by_unit: dict[str, list] = {}
        for username, first, last, unit in OWNERS:
            owner, made = User.objects.get_or_create(
                username=username,
                defaults={
                    "first_name": first,
                    "last_name": last,
                    "email": f"{username}@example.com",
                },
            )
            if made:
                owner.set_unusable_password()
                owner.save(update_fields=["password"])
                created["owners"] += 1
            owners_by_unit.setdefault(unit, []).append(owner)

        existing = set(Agent.objects.values_list("slug", flat=True))
        plan = [(slug, unit) for slug, *_rest, unit_slugs in ROLES for unit in unit_slugs]
        for n in range(agents):
            role_slug, unit_slug = plan[n % len(plan)]
            slug = f"{unit_slug}-{role_slug}-{n + 1:04d}"
            if slug in existing:
                continue
            owner = rng.choice(owners_by_unit[unit_slug])
            role = roles[role_slug]
            agent = services.agent_register(
                approved=True,
                name=f"{role.group.name} #{n + 1}",
                slug=slug,
                description=role.description,
                owner=owner,
                business_unit=units[unit_slug],
                role=role,
                by=owner,
            )
            created["agents"] += 1
            roll = rng.random()
            if roll < 0.03:
                services.agent_pause(
                    agent=agent, by=owner, reason="Owner on leave; paused for review."
                )
            elif roll < 0.04:
                services.agent_quarantine(agent=agent, by=owner, reason="Unusual access pattern.")
    return created
