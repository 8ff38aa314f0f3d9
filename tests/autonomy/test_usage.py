"""Per-agent minute counters: the gate's rate limit, denial count and daily budget read them
instead of the agent's actions, with the windows ``autonomy.usage`` documents."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents.models import Agent
from autonomy import actions, gate, usage
from autonomy.models import ActionRequest, AgentUsage

pytestmark = pytest.mark.django_db
MINUTE = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)  # a Wednesday, office hours


def fresh(registry, **limits):
    Agent.objects.filter(pk=registry.agent.pk).update(**limits)
    return Agent.objects.select_related("role__group", "business_unit").get(pk=registry.agent.pk)


def ask(agent, n: int, amount=1):
    action, _ = actions.action_request(
        agent=agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": str(n), "amount": amount},
    )
    return action


def test_each_decided_action_counts_in_its_agents_minute(registry):
    agent = fresh(registry, max_actions_per_minute=2, max_daily_spend=10_000)
    with time_machine.travel(MINUTE + timedelta(seconds=5), tick=False):
        verdicts = [ask(agent, n, amount=100).verdict for n in range(3)]
    assert verdicts == ["allow", "allow", "deny"]
    row = AgentUsage.objects.get(agent=agent)
    assert row.minute == MINUTE
    assert (row.actions, row.denials, row.spend) == (2, 1, Decimal("200.00"))


def test_last_minute_is_the_sliding_estimate_over_two_minute_rows(registry):
    agent = fresh(registry, max_actions_per_minute=3)
    with time_machine.travel(MINUTE + timedelta(seconds=30), tick=False):
        assert [ask(agent, n).verdict for n in range(3)] == ["allow"] * 3
        assert ask(agent, 3).verdict == "deny"  # the limit, within one minute
    # 10 s into the next minute, 50 of last minute's 60 s are still in the window:
    # ceil(3 x 50/60) = 3, the limit.
    with time_machine.travel(MINUTE + timedelta(seconds=70), tick=False):
        refused = ask(agent, 4)
    assert refused.verdict == "deny"
    (limited,) = [r for r in refused.reasons if r["code"] == "rate_limited"]
    assert limited["details"] == {"limit": 3, "used": 3}
    # 40 s in: ceil(3 x 20/60) = 1 estimated, so two more fit, and not a third.
    with time_machine.travel(MINUTE + timedelta(seconds=100), tick=False):
        assert [ask(agent, n).verdict for n in range(5, 8)] == ["allow", "allow", "deny"]


def test_the_estimate_weights_the_last_minute_by_what_is_left_of_the_window():
    at = MINUTE + timedelta(seconds=15)
    assert usage.actions_last_minute(at=at, this_minute=4, last_minute=10) == 4 + 8  # ceil(7.5)
    assert usage.actions_last_minute(at=MINUTE, this_minute=0, last_minute=10) == 10


def test_an_agent_never_passes_its_limit_within_one_calendar_minute(registry):
    agent = fresh(registry, max_actions_per_minute=4)
    for second in (1, 20, 40, 59):
        with time_machine.travel(MINUTE + timedelta(seconds=second), tick=False):
            ask(agent, second)
    with time_machine.travel(MINUTE + timedelta(seconds=59, microseconds=900_000), tick=False):
        assert ask(agent, 99).verdict == "deny"
    assert AgentUsage.objects.get(agent=agent, minute=MINUTE).actions == 4


def test_spend_today_counts_allowed_amounts_since_midnight_utc(registry):
    agent = fresh(registry, max_daily_spend=1000)
    with time_machine.travel(datetime(2026, 11, 24, 23, 59, tzinfo=UTC), tick=False):
        assert ask(agent, 1, amount=900).verdict == "allow"
    with time_machine.travel(MINUTE, tick=False):
        assert ask(agent, 2, amount=900).verdict == "allow"  # a new day
        refused = ask(agent, 3, amount=200)
    assert refused.verdict == "deny"
    (budget,) = [r for r in refused.reasons if r["code"] == "budget_exceeded"]
    assert budget["details"]["spent_today"] == "900.00"


def test_denials_of_the_last_hour_add_risk_and_older_ones_do_not(registry):
    agent = fresh(registry, max_actions_per_minute=1)
    with time_machine.travel(MINUTE, tick=False):
        ask(agent, 1)
        assert ask(agent, 2).verdict == "deny"  # rate limited: one denial

    def denials_at(moment):
        with time_machine.travel(moment, tick=False):
            decision = gate.decide(
                agent=agent, operation=registry.post, params={"invoice_id": "9", "amount": 1}
            )
        return [f["value"] for f in decision.risk_factors if f["factor"] == "recent_denials"]

    assert denials_at(MINUTE + timedelta(minutes=59, seconds=30)) == [1]
    assert denials_at(MINUTE + timedelta(minutes=60, seconds=1)) == []


def test_a_decision_never_reads_the_agents_actions(registry):
    """However many actions the agent has, the gate reads only its small minute rows."""
    agent = fresh(registry)
    with time_machine.travel(MINUTE, tick=False):
        for n in range(5):
            ask(agent, n)
        with CaptureQueriesContext(connection) as queries:
            gate.decide(agent=agent, operation=registry.post, params={"invoice_id": "x"})
    table = ActionRequest._meta.db_table
    assert any(AgentUsage._meta.db_table in q["sql"] for q in queries.captured_queries)
    assert not [q["sql"] for q in queries.captured_queries if table in q["sql"]]


def test_prune_deletes_the_rows_no_window_reads(registry, settings):
    settings.AUTONOMY_USAGE_KEEP_DAYS = 2
    agent = fresh(registry)
    for moment in (MINUTE - timedelta(days=3), MINUTE - timedelta(days=1), MINUTE):
        with time_machine.travel(moment, tick=False):
            ask(agent, moment.day)
    assert usage.usage_prune(now=MINUTE) == 1
    assert sorted(AgentUsage.objects.values_list("minute", flat=True)) == [
        MINUTE - timedelta(days=1),
        MINUTE,
    ]
