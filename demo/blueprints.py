"""The demo's blueprint and permission model to clone.

"Invoice clerk" is the blueprint of the finance invoice processors: the demo's agents of that
role follow it (adopted, as agents registered before it existed), so changing its limits in
the admin changes all of them at once. No autonomy level is set on it: the invoice rollout
plan (``demo.rollouts``) steers their level.

HR's assistant gets a permission model worth cloning to Legal: its grants (from
``demo.connectors``), two policies naming the role and HR, and HR thresholds unlike Legal's,
so ``/permission-models/clone/`` shows a real diff for HR → Legal.
"""

from decimal import Decimal

from django.db import transaction

from agents import blueprints, services
from agents.models import Agent, Blueprint, BusinessUnit, Role
from autonomy.models import Policy
from autonomy.policy import services as policy_services

BLUEPRINT = "invoice-clerk"
ROLE = "invoice-processor"
OPERATIONS = ["erp.match-purchase-order", "erp.post-invoice", "erp.read-invoice"]
HR_POLICIES = [
    (
        "HR assistants read employee records only for HR",
        "An HR assistant outside HR never reaches the HR system.",
        'forbid (principal in Role::"hr-assistant", action, resource in Connector::"hris")\n'
        'unless { principal in BusinessUnit::"hr" };',
    ),
    (
        "HR assistants' e-mails wait for a person",
        "Letters an HR assistant writes go out after an approver reads them.",
        '@approval("required")\n'
        'permit (principal in Role::"hr-assistant", action == Action::"invoke", '
        'resource in Connector::"mail")\nwhen { principal in BusinessUnit::"hr" };',
    ),
]
# HR's stricter risk thresholds (Legal keeps the defaults, 50 and 85).
HR_THRESHOLDS = {"approval_threshold": 40, "deny_threshold": 80}


def seed_blueprints() -> int:
    """The blueprint and the HR permission model; idempotent. Returns how many agents
    follow the blueprint newly."""
    role = Role.objects.filter(slug=ROLE).first()
    hr = BusinessUnit.objects.filter(slug="hr").first()
    if role is None or hr is None:
        return 0  # the registry seed did not run
    if not BusinessUnit.objects.filter(slug="legal").exists():
        services.business_unit_create(name="Legal", slug="legal")
    with transaction.atomic():
        blueprint = Blueprint.objects.filter(slug=BLUEPRINT).first()
        if blueprint is None:
            blueprint = blueprints.blueprint_create(
                slug=BLUEPRINT, name="Invoice clerk", role=role, by=None,
                description="Finance invoice processors: extract, match and post invoices.",
                risk_tier=role.default_risk_tier, max_actions_per_minute=60,
                max_daily_spend=Decimal("50000.00"), operations=OPERATIONS,
            )  # fmt: skip
        strays = Agent.objects.filter(role=role, blueprint=None)
        adopted = blueprints.blueprint_adopt(blueprint=blueprint, agents=strays, by=None)
        for name, description, text in HR_POLICIES:
            if not Policy.objects.filter(name=name).exists():
                policy_services.policy_save(
                    name=name, description=description, text=text, enabled=True, by=None
                )
        if hr.approval_threshold == 50 and hr.deny_threshold == 85:  # still the defaults
            services.business_unit_update(unit=hr, by=None, **HR_THRESHOLDS)
    return adopted
