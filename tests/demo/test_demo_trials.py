"""The demo's log-only trial (``demo.trials``): tighter money limits run beside the live
policies on the fleet's traffic; the desk's risk officer reads the difference and promotes
it, and the next routine posting above the new limit is denied."""

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from agents.models import Agent, AgentStatus
from autonomy import actions
from autonomy.models import PolicyTrial, TrialStatus, Verdict
from autonomy.policy import trial_selectors, trials
from demo.trials import TRIAL_NAME

pytestmark = pytest.mark.django_db


def _post(agent, amount: int):
    action, _ = actions.action_request(
        agent=agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": f"INV-T{amount}", "amount": amount, "currency": "EUR"},
        reason="fleet: routine work",
    )
    return action


def test_a_risk_officer_reads_the_demo_trials_difference_and_promotes_it(capsys):
    call_command("seed_demo", "--agents", "60")
    assert "1 policy trials" in capsys.readouterr().out
    call_command("seed_demo", "--agents", "60")
    assert "0 policy trials" in capsys.readouterr().out
    trial = PolicyTrial.objects.get(name=TRIAL_NAME, status=TrialStatus.RUNNING)

    clerk = Agent.objects.filter(role__slug="invoice-processor", status=AgentStatus.ACTIVE).first()
    routine = _post(clerk, 1_200)
    above = _post(clerk, 3_800)  # within today's routine range, above the draft's limit
    assert above.verdict != Verdict.DENY and routine.verdict == above.verdict

    summary = trial_selectors.trial_summary(trial=trial)
    assert summary.differences == 1
    assert summary.lines[0].startswith("would have denied ")
    assert "Post an invoice (1 of " in summary.lines[0]

    officer = get_user_model().objects.get(username="rita.risk")
    trials.trial_promote(trial=trial, by=officer)
    assert _post(clerk, 3_900).verdict == Verdict.DENY
    assert _post(clerk, 1_300).verdict == routine.verdict
