import pytest
from django.core.management import call_command

from agents.models import Agent, AgentStatus, BusinessUnit, Role

pytestmark = pytest.mark.django_db


def test_seed_demo_is_idempotent_and_realistic(capsys):
    call_command("seed_demo", "--agents", "60")
    first = capsys.readouterr().out
    assert "created 6 business units, 11 roles, 10 owners, 60 agents" in first
    call_command("seed_demo", "--agents", "60")
    assert "created 0 business units, 0 roles, 0 owners, 0 agents" in capsys.readouterr().out
    # the fleet, plus the one IT agent whose registration waits for approval (demo.onboarding)
    assert Agent.objects.count() == 60 + 1
    assert Agent.objects.filter(status=AgentStatus.PENDING).count() == 1
    assert set(BusinessUnit.objects.values_list("slug", flat=True)) >= {
        "finance", "procurement", "hr", "customer-ops", "it"
    }  # fmt: skip
    assert Role.objects.count() == 11
    assert all(a.owner.email for a in Agent.objects.select_related("owner"))
    assert Agent.objects.exclude(status=AgentStatus.ACTIVE).exists()


def test_seed_demo_grows_to_a_larger_size(capsys):
    call_command("seed_demo", "--agents", "20")
    call_command("seed_demo", "--agents", "30")
    assert Agent.objects.exclude(status=AgentStatus.PENDING).count() == 30


def test_the_first_day_of_work_calls_the_crm_through_the_gate():
    from autonomy.models import ActionRequest, Verdict

    call_command("seed_demo", "--agents", "60")
    crm = ActionRequest.objects.filter(operation__connector__slug="crm")
    assert crm.filter(verdict=Verdict.ALLOW).exists(), list(crm.values_list("verdict", "reasons"))
