"""The demo's blueprint and its HR permission model worth cloning to Legal."""

import pytest

from agents import blueprints
from agents.models import Agent, BusinessUnit, Role
from autonomy.models import AuditRecord
from demo import blueprints as demo_blueprints
from demo import connectors, registry

pytestmark = pytest.mark.django_db


@pytest.fixture
def seeded(db):
    registry.seed(agents=30)
    connectors.seed()
    return demo_blueprints.seed_blueprints()


def test_the_invoice_processors_follow_the_invoice_clerk_blueprint(seeded):
    processors = Agent.objects.filter(role__slug="invoice-processor")
    assert seeded == processors.count() > 0
    assert set(processors.values_list("blueprint__slug", "blueprint_version")) == {
        ("invoice-clerk", 1)
    }
    assert set(processors.values_list("max_actions_per_minute", flat=True)) == {60}
    assert demo_blueprints.seed_blueprints() == 0  # idempotent
    assert AuditRecord.objects.filter(kind="blueprint_created").count() == 1


def test_cloning_hr_to_legal_shows_a_real_diff(seeded):
    plan = blueprints.permission_model_plan(
        role=Role.objects.get(slug="hr-assistant"),
        from_unit=BusinessUnit.objects.get(slug="hr"),
        to_unit=BusinessUnit.objects.get(slug="legal"),
        new_role_slug="legal-assistant",
    )
    assert {g["target"] for g in plan["grants"]} == {"mail.*", "hris.read-employee"}
    assert len(plan["policies"]) == 2 and not any(p["errors"] for p in plan["policies"])
    assert all('BusinessUnit::"legal"' in p["text"] for p in plan["policies"])
    assert {t["field"] for t in plan["thresholds"]} == {"approval_threshold", "deny_threshold"}
