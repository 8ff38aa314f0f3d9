"""Behaviour monitoring: baselines learned from history, drift flags, reviews, the gate's risk."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from agents import behaviour
from agents.models import AgentBaseline, AgentStatus, DriftFlag, DriftKind, FlagStatus
from autonomy import gate
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    AuditRecord,
    Connector,
    ConnectorKind,
    DataClass,
    Intervention,
    InterventionKind,
    Operation,
    Verdict,
)
from tests.autonomy.gate_fixtures import build_registry
from tests.factories import UserFactory

# A Wednesday night: the burst happens at 02:00-02:30 UTC, the history is weekday office hours.
NOW = datetime(2026, 3, 11, 2, 30, tzinfo=UTC)


@pytest.fixture
def registry(db):
    return build_registry(slug="ap-bot")


@pytest.fixture
def crm_export(db) -> Operation:
    crm, _ = Connector.objects.get_or_create(
        slug="crm", defaults={"name": "CRM", "kind": ConnectorKind.CRM}
    )
    return Operation.objects.create(
        connector=crm, slug="export-contacts", name="Export", data_class=DataClass.RESTRICTED
    )


def _actions(agent, operation, times, verdict=Verdict.ALLOW) -> None:
    status = ActionStatus.SUCCEEDED if verdict == Verdict.ALLOW else ActionStatus.DENIED
    ActionRequest.objects.bulk_create(
        ActionRequest(
            agent=agent, operation=operation, verdict=verdict, status=status, created_at=at,
            params={}, risk_score=10,
        )
        for at in times
    )  # fmt: skip


def _office_history(agent, operation, *, days: int = 14, per_hour: int = 4) -> int:
    """Weekdays 09:00-17:00 UTC, ``per_hour`` actions an hour, over the ``days`` before NOW."""
    times = []
    for day in range(1, days + 1):
        date = (NOW - timedelta(days=day)).replace(hour=0, minute=0)
        if date.weekday() >= 5:
            continue
        for hour in range(9, 17):
            times += [date.replace(hour=hour, minute=m * 60 // per_hour) for m in range(per_hour)]
    _actions(agent, operation, times)
    return len(times)


def _burst(agent, operation, *, count: int, minutes: int = 10, verdict=Verdict.ALLOW) -> None:
    start = NOW - timedelta(minutes=minutes)
    step = timedelta(minutes=minutes) / count
    _actions(agent, operation, [start + step * i for i in range(count)], verdict=verdict)


@pytest.fixture
def learned(registry):
    """The agent with 14 days of office-hours invoice reading learned as its baseline."""
    sample = _office_history(registry.agent, registry.read)
    baseline = behaviour.baseline_learn(agent=registry.agent, until=NOW - timedelta(hours=1))
    assert baseline.sample_size == sample
    return registry


def _kinds(flags) -> set[str]:
    return {flag.kind for flag in flags}


def test_baseline_learns_connectors_hours_rate_and_data_class_from_history(learned):
    baseline = AgentBaseline.objects.get(agent=learned.agent)
    assert baseline.connectors == {"erp": baseline.sample_size}
    assert baseline.operations == {"erp.read-invoice": baseline.sample_size}
    assert [h for h, n in enumerate(baseline.hours) if n] == list(range(9, 17))
    assert baseline.rate_p95 == 4 and baseline.rate_mean == 4
    assert baseline.max_data_class == DataClass.INTERNAL
    assert baseline.denial_ratio == 0


def test_off_baseline_night_burst_raises_rate_spike_and_unusual_hour_with_evidence(learned):
    _burst(learned.agent, learned.read, count=60)

    flags = behaviour.drift_check(agent=learned.agent, now=NOW)

    assert _kinds(flags) == {DriftKind.RATE_SPIKE, DriftKind.UNUSUAL_HOUR}
    spike = next(f for f in flags if f.kind == DriftKind.RATE_SPIKE)
    assert spike.evidence["actions"] == 60 and spike.evidence["ceiling"] == behaviour.RATE_FLOOR
    assert spike.evidence["baseline_p95_per_hour"] == 4
    hour = next(f for f in flags if f.kind == DriftKind.UNUSUAL_HOUR)
    assert hour.subject == "02" and hour.evidence["baseline_actions_at_hour"] == 0
    assert AuditRecord.objects.filter(kind="drift.flag_raised").count() == 2


def test_activity_within_the_baseline_raises_nothing(learned):
    daytime = NOW.replace(hour=11)
    _actions(learned.agent, learned.read, [daytime - timedelta(minutes=m) for m in range(4)])

    assert behaviour.drift_check(agent=learned.agent, now=daytime) == []


def test_the_same_open_flag_is_not_raised_twice(learned):
    _burst(learned.agent, learned.read, count=60)
    behaviour.drift_check(agent=learned.agent, now=NOW)

    again = behaviour.drift_check(agent=learned.agent, now=NOW + timedelta(minutes=1))

    assert again == []
    assert DriftFlag.objects.filter(agent=learned.agent, status=FlagStatus.OPEN).count() == 2


def test_dismissed_flags_stop_repeating_on_the_next_check(learned):
    officer = UserFactory(username="officer")
    _burst(learned.agent, learned.read, count=60)
    for flag in behaviour.drift_check(agent=learned.agent, now=NOW):
        behaviour.flag_review(flag=flag, by=officer, verdict="dismiss", note="month-end batch")
    # The next night, the same behaviour: accepted now, so nothing new (past the cooldown).
    next_night = NOW + timedelta(days=1)
    _actions(
        learned.agent, learned.read, [next_night - timedelta(seconds=s * 10) for s in range(60)]
    )

    assert behaviour.drift_check(agent=learned.agent, now=next_night) == []
    accepted = AgentBaseline.objects.get(agent=learned.agent).accepted
    assert accepted["hours"] == [2] and accepted["rate"] >= 60


def test_dismissal_survives_relearning_the_baseline(learned):
    officer = UserFactory(username="officer")
    _burst(learned.agent, learned.read, count=60)
    for flag in behaviour.drift_check(agent=learned.agent, now=NOW):
        behaviour.flag_review(flag=flag, by=officer, verdict="dismiss")

    baseline = behaviour.baseline_learn(agent=learned.agent, until=NOW - timedelta(hours=1))

    assert baseline.accepted["hours"] == [2]


def test_first_use_of_a_connector_is_flagged_with_the_known_connectors(learned, crm_export):
    daytime = NOW.replace(hour=11)
    crm_read = Operation.objects.create(
        connector=crm_export.connector, slug="read-account", name="Read", data_class="internal"
    )
    _actions(learned.agent, crm_read, [daytime - timedelta(minutes=5)])

    [flag] = behaviour.drift_check(agent=learned.agent, now=daytime)

    assert (flag.kind, flag.subject) == (DriftKind.FIRST_CONNECTOR, "crm")
    assert flag.evidence["baseline_connectors"] == ["erp"]


def test_operation_of_a_higher_data_class_is_an_escalation(learned):
    daytime = NOW.replace(hour=11)
    restricted = Operation.objects.create(
        connector=learned.erp, slug="read-payroll", name="Payroll", data_class="restricted"
    )
    _actions(learned.agent, restricted, [daytime - timedelta(minutes=5)])

    [flag] = behaviour.drift_check(agent=learned.agent, now=daytime)

    assert (flag.kind, flag.subject) == (DriftKind.DATA_CLASS_ESCALATION, "restricted")
    assert flag.evidence["baseline_max_data_class"] == "internal"


def test_a_burst_of_denials_is_flagged(learned):
    daytime = NOW.replace(hour=11)
    _actions(
        learned.agent,
        learned.read,
        [daytime - timedelta(minutes=m) for m in range(6)],
        verdict=Verdict.DENY,
    )

    [flag] = behaviour.drift_check(agent=learned.agent, now=daytime)

    assert flag.kind == DriftKind.DENIAL_BURST
    assert flag.evidence["denials"] == 6 and flag.evidence["ratio"] == 1.0


def test_an_agent_without_a_baseline_is_not_judged(registry):
    _burst(registry.agent, registry.read, count=60)

    assert behaviour.drift_check(agent=registry.agent, now=NOW) == []


def test_new_flag_quarantines_the_agent_when_its_unit_says_so(learned, crm_export):
    unit = learned.agent.business_unit
    unit.auto_quarantine_on_drift = True
    unit.save()
    _actions(learned.agent, crm_export, [NOW.replace(hour=11) - timedelta(minutes=1)])

    behaviour.drift_check(agent=learned.agent, now=NOW.replace(hour=11))

    learned.agent.refresh_from_db()
    assert learned.agent.status == AgentStatus.QUARANTINED
    assert "first_connector" not in learned.agent.status_reason  # worded by label
    assert "First use of a connector: crm" in learned.agent.status_reason
    intervention = Intervention.objects.get(agent=learned.agent)
    assert intervention.kind == InterventionKind.QUARANTINE and intervention.by is None
    assert AuditRecord.objects.filter(kind="agent.auto_quarantined").count() == 1


def test_new_flag_leaves_the_agent_running_by_default(learned, crm_export):
    _actions(learned.agent, crm_export, [NOW.replace(hour=11) - timedelta(minutes=1)])

    assert behaviour.drift_check(agent=learned.agent, now=NOW.replace(hour=11))

    learned.agent.refresh_from_db()
    assert learned.agent.status == AgentStatus.ACTIVE
    assert not Intervention.objects.filter(agent=learned.agent).exists()


def test_confirmed_flag_is_closed_and_audited(learned, crm_export):
    officer = UserFactory(username="officer")
    _actions(learned.agent, crm_export, [NOW.replace(hour=11) - timedelta(minutes=1)])
    flag = behaviour.drift_check(agent=learned.agent, now=NOW.replace(hour=11))[0]

    reviewed = behaviour.flag_review(flag=flag, by=officer, verdict="confirm", note="not allowed")

    assert (reviewed.status, reviewed.reviewed_by) == (FlagStatus.CONFIRMED, officer)
    assert AgentBaseline.objects.get(agent=learned.agent).accepted == {}
    record = AuditRecord.objects.get(kind="drift.flag_reviewed")
    assert record.payload["verdict"] == "confirmed" and record.actor == "officer"


def _decision_queries(agent, operation) -> tuple[int, gate.Decision]:
    params = {"invoice_id": "1", "amount": 1}
    gate.decide(agent=agent, operation=operation, params=params)  # warm the policy cache
    with CaptureQueriesContext(connection) as ctx:
        decision = gate.decide(agent=agent, operation=operation, params=params)
    return len(ctx.captured_queries), decision


def test_open_flags_raise_the_gate_risk_in_the_same_number_of_queries(registry):
    before, plain = _decision_queries(registry.agent, registry.post)
    for kind in (DriftKind.RATE_SPIKE, DriftKind.UNUSUAL_HOUR, DriftKind.DENIAL_BURST):
        DriftFlag.objects.create(agent=registry.agent, kind=kind, evidence={})
    DriftFlag.objects.create(
        agent=registry.agent, kind=DriftKind.RATE_SPIKE, status=FlagStatus.DISMISSED
    )

    after, flagged = _decision_queries(registry.agent, registry.post)

    assert after == before
    factor = next(f for f in flagged.risk_factors if f["factor"] == "drift_flags")
    assert factor["value"] == ["denial_burst", "rate_spike", "unusual_hour"]
    assert factor["points"] == 20
    assert flagged.risk_score == plain.risk_score + 20


def test_drift_sweep_checks_recently_active_agents(learned, crm_export):
    from agents import tasks

    _actions(learned.agent, crm_export, [datetime.now(UTC) - timedelta(minutes=1)])

    assert tasks.drift_sweep() >= 1
    assert DriftFlag.objects.filter(agent=learned.agent, subject="crm").exists()


def test_seed_demo_leaves_one_drifting_agent_with_open_flags_and_stays_idempotent(db, capsys):
    from django.core.management import call_command

    call_command("seed_demo", "--agents", "60")
    flags = DriftFlag.objects.filter(status=FlagStatus.OPEN)
    kinds = set(flags.values_list("kind", flat=True))
    assert {DriftKind.FIRST_CONNECTOR, DriftKind.UNUSUAL_HOUR, DriftKind.RATE_SPIKE} <= kinds
    assert flags.values("agent").distinct().count() == 1
    assert flags.first().agent.role.slug == "data-analyst"
    count = DriftFlag.objects.count()

    call_command("seed_demo", "--agents", "60")

    assert DriftFlag.objects.count() == count
    assert "0 drift flags" in capsys.readouterr().out.splitlines()[-1]
