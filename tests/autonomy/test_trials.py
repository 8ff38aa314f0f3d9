"""Log-only policy trials: a draft decides beside the live policies, its differences are
recorded with the action, and the outcome never changes; the page reads the difference and
promotes the draft."""

import itertools
from collections import Counter
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents import services as agent_services
from agents.portal_roles import PortalRole, group_name
from autonomy import actions as lifecycle
from autonomy import gate, grants
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import (
    ActionRequest,
    AuditRecord,
    Policy,
    PolicyTrial,
    TrialDifference,
    TrialStatus,
    Verdict,
)
from autonomy.policy import engine, trials
from autonomy.policy import trial_selectors as selectors
from tests.autonomy.gate_fixtures import BASELINE, build_registry
from tests.factories import BusinessUnitFactory, UserFactory

pytestmark = pytest.mark.django_db

# Stricter: invoice postings over 5,000 are forbidden outside finance.
STRICTER = (
    'forbid (principal, action, resource == Operation::"erp.post-invoice") '
    "when { context has amount && context.amount > 5000 } "
    'unless { principal in BusinessUnit::"finance" };'
)
AMOUNTS = [10, 900, 4_999, 5_001, 12_000, 60_000, 150_000]


def person(username: str, role: str | None):
    user = UserFactory(username=username, is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=group_name(role)))
    return user


@pytest.fixture
def registry():
    return build_registry()


@pytest.fixture
def officer():
    return person("risk", PortalRole.RISK_OFFICER)


@pytest.fixture
def ops_agent(registry):
    """An agent of another unit, with the same role (so the same grant)."""
    unit = BusinessUnitFactory(slug="ops", name="Operations")
    agent = agent_services.agent_register(
        name="Ops bot", slug="ops-bot", owner=registry.officer, business_unit=unit,
        role=registry.agent.role, risk_tier=1, approved=True,
    )  # fmt: skip
    for each in (registry.agent.business_unit, unit):
        each.approval_threshold = 30  # big amounts go to a person
        each.save()
    for each in (registry.agent, agent):
        each.max_actions_per_minute = 10_000
        each.max_daily_spend = Decimal("100000000")
        each.save()
    return agent


def _params(operation: str, amount: int) -> dict:
    return (
        {"invoice_id": f"i-{amount}", "amount": amount}
        if operation.endswith("post-invoice")
        else {}
    )


def _request(agent, amount: int, operation="erp.post-invoice"):
    params = _params(operation, amount)
    action, _ = lifecycle.action_request(agent=agent, operation_key=operation, params=params)
    return action


def _traffic(registry, ops_agent):
    """Varied requests: two units, allow / needs approval / deny (ungranted read) verdicts."""
    for agent, amount in itertools.product((registry.agent, ops_agent), AMOUNTS):
        yield agent, "erp.post-invoice", amount
    yield ops_agent, "erp.read-invoice", 0


def test_log_only_never_changes_an_outcome_and_the_counts_match_a_recomputation(
    registry, ops_agent, officer
):
    trial = trials.trial_start(name="big invoices outside finance", text=STRICTER, by=officer)
    expected = Counter()
    live_verdicts = Counter()
    for agent, key, amount in _traffic(registry, ops_agent):
        operation = lifecycle.resolve_operation(key=key)
        params = _params(key, amount)
        # The oracle: the same request decided without the trial, and with the draft through
        # simulate's path (decide(draft_text=...)), on the same state, before it is recorded.
        without = gate.decide(agent=agent, operation=operation, params=params)
        drafted = gate.decide(agent=agent, operation=operation, params=params, draft_text=STRICTER)
        action = _request(agent, amount, key)

        assert (action.verdict, action.reasons, action.risk_score) == (
            without.verdict, without.reasons, without.risk_score,
        )  # fmt: skip
        live_verdicts[action.verdict] += 1
        if drafted.verdict != without.verdict:
            expected[(agent.slug, key, drafted.verdict)] += 1

    recorded = Counter(
        (d.agent.slug, d.operation.key, d.draft_verdict)
        for d in TrialDifference.objects.select_related("agent", "operation__connector")
    )
    assert recorded == expected
    # The traffic was varied, and the draft differed on a fair share of it, never in finance.
    assert len(live_verdicts) == 3 and sum(expected.values()) >= 4
    assert all(slug == "ops-bot" for slug, _, _ in expected)
    summary = selectors.trial_summary(trial=trial)
    assert summary.differences == sum(expected.values())
    assert summary.decisions == ActionRequest.objects.count()
    posts = sum(1 for a, k, _ in _traffic(registry, ops_agent) if k == "erp.post-invoice")
    denied = sum(n for (_, _, v), n in expected.items() if v == Verdict.DENY)
    share = f"{100 * denied / posts:.0f}%"
    assert summary.lines == [f"would have denied {share} of Post invoice ({denied} of {posts})"]


def test_a_running_trial_adds_no_query_to_a_decision_it_agrees_with(registry, ops_agent, officer):
    _request(registry.agent, 10)  # warm: caches of this version
    with CaptureQueriesContext(connection) as without:
        _request(registry.agent, 11)
    trials.trial_start(name="strict", text=STRICTER, by=officer)
    _request(registry.agent, 12)  # the new version: read and compile once
    _request(ops_agent, 9_000)  # the ops agent's first request: its own rows
    with CaptureQueriesContext(connection) as agreeing:
        _request(registry.agent, 13)  # finance: the draft agrees
    with CaptureQueriesContext(connection) as differing:
        _request(ops_agent, 9_001)
    with CaptureQueriesContext(connection) as agreeing_ops:
        _request(ops_agent, 100)

    assert len(agreeing) == len(without)
    # A difference costs one statement: its insert.
    assert len(differing) == len(agreeing_ops) + 1
    assert TrialDifference.objects.count() == 2


def test_promote_makes_the_draft_live_on_the_next_request(registry, ops_agent, officer):
    trial = trials.trial_start(name="strict-posting", text=STRICTER, by=officer)
    before = _request(ops_agent, 9_000)
    assert before.verdict != Verdict.DENY

    trials.trial_promote(trial=trial, by=officer)

    after = _request(ops_agent, 9_000)
    assert after.verdict == Verdict.DENY
    assert after.reasons[0]["code"] == ErrorCode.POLICY_FORBID
    policy = Policy.objects.get(name="strict-posting")
    assert policy.enabled and policy.text == STRICTER
    trial.refresh_from_db()
    assert trial.status == TrialStatus.PROMOTED and trial.promoted_by == officer
    assert AuditRecord.objects.filter(kind="policy_trial_promoted").count() == 1
    # A promoted trial records nothing more, and cannot be promoted again.
    assert TrialDifference.objects.filter(action=after).count() == 0
    with pytest.raises(DomainError) as refused:
        trials.trial_promote(trial=trial, by=officer)
    assert refused.value.code == ErrorCode.ILLEGAL_TRANSITION


def test_a_draft_replacing_a_policy_is_promoted_into_that_policy(registry, ops_agent, officer):
    baseline = Policy.objects.get(name="baseline")
    stricter_baseline = BASELINE + "\n" + STRICTER
    trial = trials.trial_start(
        name="tighten baseline", text=stricter_baseline, replaces=baseline, by=officer
    )
    _request(ops_agent, 70_000)
    assert TrialDifference.objects.filter(trial=trial).count() == 1

    trials.trial_promote(trial=trial, by=officer)

    baseline.refresh_from_db()
    assert baseline.text == stricter_baseline and baseline.version == 2
    assert Policy.objects.count() == 1


def test_a_whole_draft_set_replaces_every_enabled_policy(registry, ops_agent, officer):
    reads_only = 'permit (principal, action, resource == Operation::"erp.read-invoice");'
    trial = trials.trial_start(
        name="reads only", drafts=[{"name": "reads", "text": reads_only}], by=officer
    )
    action = _request(registry.agent, 10)
    difference = TrialDifference.objects.get(trial=trial)
    assert (difference.live_verdict, difference.draft_verdict) == (action.verdict, Verdict.DENY)
    assert difference.draft_reasons[0]["code"] == ErrorCode.POLICY_NO_PERMIT

    trials.trial_promote(trial=trial, by=officer)

    assert list(Policy.objects.filter(enabled=True).values_list("name", flat=True)) == ["reads"]
    assert _request(registry.agent, 10).verdict == Verdict.DENY


def test_stop_stops_recording(registry, ops_agent, officer):
    trial = trials.trial_start(name="strict", text=STRICTER, by=officer)
    _request(ops_agent, 9_000)
    trials.trial_stop(trial=trial, by=officer)
    _request(ops_agent, 9_000)
    assert TrialDifference.objects.filter(trial=trial).count() == 1
    trial.refresh_from_db()
    assert trial.status == TrialStatus.STOPPED and trial.stopped_at is not None


@pytest.mark.parametrize("role", [PortalRole.AUDITOR, PortalRole.VIEWER, PortalRole.APPROVER])
def test_people_who_may_not_change_policies_cannot_run_trials(registry, officer, role):
    who = person(f"p-{role}", role)
    with pytest.raises(DomainError) as refused:
        trials.trial_start(name="x", text=STRICTER, by=who)
    assert refused.value.code == ErrorCode.PERMISSION_DENIED
    trial = trials.trial_start(name="x", text=STRICTER, by=officer)
    for act in (trials.trial_stop, trials.trial_promote):
        with pytest.raises(DomainError):
            act(trial=trial, by=who)
    trial.refresh_from_db()
    assert trial.status == TrialStatus.RUNNING


def test_an_agents_service_user_cannot_run_trials_even_with_the_permission(registry):
    service_user = registry.agent.service_user
    service_user.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    with pytest.raises(DomainError):
        trials.trial_start(name="x", text=STRICTER, by=service_user)


@pytest.mark.parametrize(
    "text",
    [
        "permit (principal, action, resource",  # does not parse
        "forbid (principal, action, resource) when { context.nonexistent > 1 };",  # schema
        "permit (principal == ?principal, action, resource);",  # a template
        "",
    ],
)
def test_an_invalid_draft_starts_nothing(registry, officer, text):
    with pytest.raises(DomainError) as refused:
        trials.trial_start(name="bad", text=text, by=officer)
    assert refused.value.code == ErrorCode.VALIDATION_FAILED
    assert not PolicyTrial.objects.exists()


def test_a_draft_set_needs_distinct_names(registry, officer):
    with pytest.raises(DomainError):
        trials.trial_start(
            name="s", drafts=[{"name": "a", "text": BASELINE}, {"name": "a", "text": BASELINE}],
            by=officer,
        )  # fmt: skip


class Exploding(engine.StatementSet):
    def slice(self, buckets):
        raise RuntimeError("draft exploded")


def test_a_draft_that_raises_never_breaks_the_live_decision(
    registry, ops_agent, officer, monkeypatch
):
    trial = trials.trial_start(name="strict", text=STRICTER, by=officer)
    baseline = _request(ops_agent, 9_000).verdict
    broken = trials.RunningTrial(pk=trial.pk, name=trial.name, statements=Exploding([], {}))
    monkeypatch.setattr(trials, "running", lambda *, version: (broken,))

    action = _request(ops_agent, 9_000)

    assert action.verdict == baseline
    trial.refresh_from_db()
    assert trial.errors == 1
    assert TrialDifference.objects.filter(action=action).count() == 0


def test_the_running_trials_are_read_once_per_store_version(registry, officer, monkeypatch):
    trials.trial_start(name="strict", text=STRICTER, by=officer)
    built = []
    real = trials.RunningTrials.__init__

    def counting(self, version):
        built.append(version)
        real(self, version)

    monkeypatch.setattr(trials.RunningTrials, "__init__", counting)
    trials.running_forget()
    for amount in (1, 2, 3):
        _request(registry.agent, amount)
    assert len(built) == 1


def test_the_summary_reads_a_constant_number_of_queries(
    registry, ops_agent, officer, django_assert_max_num_queries
):
    trial = trials.trial_start(name="strict", text=STRICTER, by=officer)
    for amount in range(6_000, 6_010):
        _request(ops_agent, amount)
    with django_assert_max_num_queries(8):
        small = selectors.trial_summary(trial=trial)
    for amount in range(7_000, 7_060):
        _request(ops_agent, amount)
    with django_assert_max_num_queries(8):
        large = selectors.trial_summary(trial=trial)
    assert (small.differences, large.differences) == (10, 70)
    assert len(large.examples) == selectors.EXAMPLES


def test_grants_are_untouched_by_a_trial(registry, ops_agent, officer):
    """A draft only stands in for policies: an ungranted operation stays denied for both."""
    trials.trial_start(name="permit all", drafts=[{"name": "all", "text": BASELINE}], by=officer)
    action = _request(ops_agent, 0, "erp.read-invoice")
    assert action.verdict == Verdict.DENY
    assert not grants.is_granted(operation=registry.read, agent=ops_agent)
    assert TrialDifference.objects.count() == 0


DRAFTS = {
    "stricter": (STRICTER, False),
    "asks above 1,000": (
        BASELINE.replace("permit", '@approval("required") permit').replace(
            ";", " when { context has amount && context.amount > 1000 };"
        )
        + "\n"
        + BASELINE.replace(";", " unless { context has amount && context.amount > 1000 };"),
        True,
    ),
    "finance only": ('permit (principal in BusinessUnit::"finance", action, resource);', True),
    "nothing": ("forbid (principal, action, resource);", False),
}


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    which=st.integers(min_value=0, max_value=1),
    key=st.sampled_from(["erp.post-invoice", "erp.read-invoice"]),
    amount=st.integers(min_value=0, max_value=300_000),
)
def test_running_trials_never_change_a_decision_and_each_agrees_with_simulate(
    registry, ops_agent, officer, which, key, amount
):
    """Four trials at once (a new policy, a replacement, whole sets): the live decision is the
    one without trials, and each trial's verdict is simulate's with the same draft (a whole
    set is the baseline's replacement here: the baseline is the only enabled policy)."""
    baseline = Policy.objects.get(name="baseline")
    if not PolicyTrial.objects.exists():
        for name, (text, replaces) in DRAFTS.items():
            if name in ("finance only", "nothing"):
                trials.trial_start(name=name, drafts=[{"name": name, "text": text}], by=officer)
            else:
                trials.trial_start(
                    name=name, text=text, replaces=baseline if replaces else None, by=officer
                )
    agent = (registry.agent, ops_agent)[which]
    operation = lifecycle.resolve_operation(key=key)
    params = _params(key, amount)

    live = gate.decide(agent=agent, operation=operation, params=params)
    both = gate.decide(agent=agent, operation=operation, params=params, trials=True)

    assert (both.verdict, both.reasons, both.risk_score) == (
        live.verdict, live.reasons, live.risk_score,
    )  # fmt: skip
    differing = {t.trial_id: t.verdict for t in both.trials}
    assert not any(t.failed for t in both.trials)
    for trial in PolicyTrial.objects.all():
        text, replaces = DRAFTS[trial.name]
        simulated = gate.decide(
            agent=agent, operation=operation, params=params, draft_text=text,
            draft_replaces=baseline.pk if replaces or trial.kind == "set" else None,
        )  # fmt: skip
        expected = simulated.verdict if simulated.verdict != live.verdict else None
        assert differing.get(trial.pk) == expected, trial.name
