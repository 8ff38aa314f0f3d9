"""Suggestions from history: counts and the replay on recorded requests match a recomputation
by hand; thresholds, idempotency, drafts, permissions and the refresh's query count."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Group, Permission
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import Agent
from agents.portal_roles import PortalRole, group_name
from agents.services import portal_roles_sync
from approvals import services, suggestions
from approvals.models import (
    ApprovalRequest,
    Channel,
    Suggestion,
    SuggestionKind,
    SuggestionStatus,
)
from autonomy import actions, gate
from autonomy.errors import ErrorCode
from autonomy.models import ActionRequest, HumanDecision, Policy, StandingApproval, Verdict
from autonomy.policy import engine
from autonomy.policy import services as policy_services
from tests.approvals.conftest import approver
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import assert_envelope, at_once, bearer
from tests.factories import BusinessUnitFactory, make_agent, make_role

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
RISK = (ErrorCode.RISK_NEEDS_APPROVAL,)
SUPERVISED = (ErrorCode.RISK_NEEDS_APPROVAL, ErrorCode.AUTONOMY_SUPERVISED)
APPROVED, CHANGED, REJECTED = HumanDecision.APPROVED, HumanDecision.CHANGED, HumanDecision.REJECTED


@pytest.fixture
def thresholds(settings):
    settings.AUTONOMY_SUGGEST_MIN_APPROVED = 5
    settings.AUTONOMY_SUGGEST_MAX_REJECTED = 1
    settings.AUTONOMY_SUGGEST_WINDOW_DAYS = 14
    settings.AUTONOMY_SUGGEST_HEADROOM = 1.2
    settings.AUTONOMY_SUGGEST_STANDING_DAYS = 7
    return settings


def record(agent, operation, *, at, risk, said="", reasons=RISK, amount=None, policies=()):
    """One recorded request that waited for people, as the gate and the approval wrote it."""
    action = ActionRequest.objects.create(
        agent=agent, operation=operation, params={"invoice_id": "INV", "amount": 1},
        verdict=Verdict.NEEDS_APPROVAL, status="approved" if said == APPROVED else "denied",
        risk_score=risk, amount=None if amount is None else Decimal(str(amount)),
        reasons=[gate.reason_entry(code, "asked") for code in reasons],
        policy_ids={"permits": [{"policy_id": p, "policy": "p"} for p in policies]},
        human_decision=said, created_at=at,
    )  # fmt: skip
    ApprovalRequest.objects.create(
        action=action, agent=agent, business_unit=agent.business_unit, subject="s",
        risk_score=risk, approver_group=Group.objects.get_or_create(name="ap")[0],
        expires_at=at + timedelta(days=1),
    )  # fmt: skip
    return action


def seed_history(registry):
    """The history recomputed by hand in ``test_counts_and_replay_match_a_recomputation``."""
    agent, op = registry.agent, registry.post
    day1, day2, day3 = (NOW - timedelta(days=d) for d in (10, 9, 8))

    def at(day, minute):
        return day + timedelta(minutes=minute)

    # day 1: three approved as asked; one changed, its amount far above
    record(agent, op, at=at(day1, 1), risk=50, said=APPROVED, amount=100)
    record(agent, op, at=at(day1, 2), risk=55, said=APPROVED, amount=200)
    record(agent, op, at=at(day1, 3), risk=60, said=APPROVED, amount=300)
    record(agent, op, at=at(day1, 4), risk=40, said=CHANGED, amount=5000)
    # day 2: two approved, one rejected in bounds, one changed above the risk, two undecided
    record(agent, op, at=at(day2, 1), risk=52, said=APPROVED, amount=150)
    record(agent, op, at=at(day2, 2), risk=58, said=APPROVED, amount="250.50")
    record(agent, op, at=at(day2, 3), risk=57, said=REJECTED, amount=100)
    record(agent, op, at=at(day2, 4), risk=70, said=CHANGED, amount=100)
    record(agent, op, at=at(day2, 5), risk=30, amount=10)
    record(agent, op, at=at(day2, 6), risk=30, amount=10)
    # day 3: one approved, one undecided, one approved that a supervised level also asked for
    record(agent, op, at=at(day3, 1), risk=45, said=APPROVED, amount=50)
    record(agent, op, at=at(day3, 2), risk=40, amount=80)
    record(agent, op, at=at(day3, 3), risk=50, said=APPROVED, amount=120, reasons=SUPERVISED)
    # outside the window
    record(agent, op, at=NOW - timedelta(days=20), risk=99, said=APPROVED, amount=9999)
    # another unit: its own pattern, too few approvals
    other = make_agent(slug="other-bot", business_unit=BusinessUnitFactory(slug="ops"),
                       role=agent.role)  # fmt: skip
    for minute in (1, 2):
        record(other, op, at=at(day1, minute), risk=50, said=APPROVED, amount=100)


def test_counts_and_replay_match_a_recomputation_by_hand(db, thresholds):
    registry = build_registry()
    seed_history(registry)

    assert suggestions.suggestions_refresh(now=NOW) == {
        "proposed": 1, "refreshed": 0, "withdrawn": 0,
    }  # fmt: skip
    s = Suggestion.objects.get()
    assert (s.operation, s.role, s.business_unit) == (
        registry.post,
        registry.agent.role,
        registry.agent.business_unit,
    )
    # a supervised level asked too for one approval: only a standing approval, never a policy
    assert s.kind == SuggestionKind.STANDING and s.status == SuggestionStatus.OPEN
    evidence = s.evidence
    assert {k: evidence[k] for k in ("waited", "approved", "changed", "rejected", "undecided")} == {
        "waited": 13, "approved": 7, "changed": 2, "rejected": 1, "undecided": 3,
    }  # fmt: skip
    assert (evidence["min_risk"], evidence["max_risk"], evidence["max_amount"]) == (
        45,
        60,
        "300.00",
    )
    assert evidence["busiest_day"] == 3 and evidence["window_days"] == 14
    assert len(evidence["samples"]) == 5
    # bounds: risk ≤ 60, amount ≤ 300, a day ≤ ceil(3 × 1.2) = 4
    simulation = s.simulation
    assert simulation["bounds"] == {"max_risk": 60, "max_amount": 300, "daily_limit": 4}
    # day 1: 3 allowed, the 5000 one waits (amount); day 2: the two approved, the rejected and
    # the first undecided fill the bound of 4, the second undecided waits (over the bound),
    # the changed one at risk 70 waits (risk); day 3: approved and undecided allowed, the
    # supervised one waits (other reason). 9 allowed of 13.
    assert simulation["replayed"] == 13
    assert simulation["would_allow"] == 9 and simulation["would_wait"] == 4
    assert simulation["wait_reasons"] == {
        "risk_above": 1, "amount_above": 1, "over_daily_limit": 1, "other_reasons": 1,
    }  # fmt: skip
    assert simulation["would_allow_approved"] == 6
    assert simulation["would_allow_rejected"] == 1  # the cost
    assert simulation["would_allow_changed"] == 0
    assert simulation["would_allow_undecided"] == 2
    # expected fall: 9 over 14 days; the inbox had 13 + 2 (the other unit) requests
    assert s.per_day == round(9 / 14, 2)
    assert s.inbox_share == round(9 / 15, 4)


def test_one_reject_more_than_allowed_withdraws_the_suggestion(db, thresholds):
    registry = build_registry()
    seed_history(registry)
    suggestions.suggestions_refresh(now=NOW)
    assert Suggestion.objects.filter(status=SuggestionStatus.OPEN).count() == 1
    record(registry.agent, registry.post, at=NOW - timedelta(days=1), risk=20, said=REJECTED)
    assert suggestions.suggestions_refresh(now=NOW)["withdrawn"] == 1
    assert not Suggestion.objects.exists()


def test_too_few_approvals_propose_nothing(db, thresholds):
    thresholds.AUTONOMY_SUGGEST_MIN_APPROVED = 8  # the pattern has 7
    seed_history(build_registry())
    assert suggestions.suggestions_refresh(now=NOW)["proposed"] == 0
    thresholds.AUTONOMY_SUGGEST_MIN_APPROVED = 7
    assert suggestions.suggestions_refresh(now=NOW)["proposed"] == 1


def test_refresh_is_idempotent_and_refreshes_figures(db, thresholds):
    registry = build_registry()
    seed_history(registry)
    suggestions.suggestions_refresh(now=NOW)
    first = Suggestion.objects.get()
    assert suggestions.suggestions_refresh(now=NOW) == {
        "proposed": 0, "refreshed": 1, "withdrawn": 0,
    }  # fmt: skip
    again = Suggestion.objects.get()
    assert again.pk == first.pk and again.simulation == first.simulation
    record(registry.agent, registry.post, at=NOW - timedelta(days=1), risk=10, said=APPROVED)
    suggestions.suggestions_refresh(now=NOW)
    assert Suggestion.objects.get().evidence["approved"] == 8


def test_a_dismissed_pattern_is_not_proposed_again_within_the_window(db, thresholds):
    seed_history(build_registry())
    suggestions.suggestions_refresh(now=NOW)
    officer = _officer("risk-1")
    s = Suggestion.objects.get()
    suggestions.suggestion_dismiss(suggestion_id=s.pk, by=officer)
    assert suggestions.suggestions_refresh(now=NOW)["proposed"] == 0
    with pytest.raises(Exception) as refused:
        suggestions.suggestion_dismiss(suggestion_id=s.pk, by=officer)
    assert refused.value.code == ErrorCode.SUGGESTION_NOT_OPEN


def test_refresh_costs_the_same_queries_for_ten_or_a_thousand_requests(
    db, thresholds, django_assert_max_num_queries
):
    registry = build_registry()
    seed_history(registry)
    with django_assert_max_num_queries(9):  # 7 statements and the atomic block's savepoint
        suggestions.suggestions_refresh(now=NOW)
    for n in range(1000):
        record(registry.agent, registry.post, at=NOW - timedelta(days=2, minutes=n), risk=30,
               said=APPROVED)  # fmt: skip
    with django_assert_max_num_queries(9):  # 7 statements and the atomic block's savepoint
        suggestions.suggestions_refresh(now=NOW)
    assert Suggestion.objects.get().evidence["approved"] == 1007


@pytest.mark.django_db(transaction=True)
def test_concurrent_refreshes_leave_one_open_suggestion(postgres, thresholds):
    seed_history(build_registry())
    outcomes = at_once(*[lambda: suggestions.suggestions_refresh(now=NOW)] * 4)
    assert outcomes == ["ok"] * 4
    assert Suggestion.objects.filter(status=SuggestionStatus.OPEN).count() == 1


# --- a pattern that waits for a policy, through the real path ------------------------------

ASKING = (
    '@approval("required")\n'
    'permit (principal, action == Action::"invoke", resource in Connector::"erp")\n'
    "when { context has amount && context.amount > 1000 };"
)


def _officer(username: str):
    portal_roles_sync()
    return approver(username, group=group_name(PortalRole.RISK_OFFICER))


def _policy_history(thresholds, *, approvals: int = 3, baseline: bool = True):
    """A policy asks for approval of payments above 1000; people approve ``approvals`` as
    asked through the inbox's service. Without the baseline, that policy is the only permit
    of what it asks for."""
    thresholds.AUTONOMY_SUGGEST_MIN_APPROVED = approvals
    registry = build_registry(baseline=baseline)
    asking = policy_services.policy_save(name="Large invoices", text=ASKING, enabled=True)
    person = approver("approver-1")
    for n in range(approvals):
        action, _ = actions.action_request(
            agent=registry.agent, operation_key="erp.post-invoice",
            params={"invoice_id": f"INV-{n}", "amount": 2000 + n}, reason="history",
        )  # fmt: skip
        assert [r["code"] for r in action.reasons] == [ErrorCode.POLICY_REQUIRES_APPROVAL]
        services.approval_decide(request_id=action.approval.pk, approver=person,
                                 verdict="approve", channel=Channel.INBOX)  # fmt: skip
    return registry, asking


def test_people_approving_through_the_inbox_count_as_approved_unchanged(db, thresholds):
    registry, asking = _policy_history(thresholds)
    assert set(ActionRequest.objects.values_list("human_decision", flat=True)) == {APPROVED}
    suggestions.suggestions_refresh()
    s = Suggestion.objects.get()
    assert s.kind == SuggestionKind.POLICY
    assert s.evidence["approved"] == 3 and s.evidence["policies"] == sorted(
        Policy.objects.filter(enabled=True).values_list("pk", flat=True)
    )
    assert s.simulation["would_allow"] == 3 and s.simulation["bounds"]["daily_limit"] is None


@pytest.mark.parametrize("baseline", [True, False], ids=["beside-a-baseline", "only-permit"])
def test_draft_policy_is_disabled_valid_and_spares_only_the_pattern(db, thresholds, baseline):
    registry, asking = _policy_history(thresholds, baseline=baseline)
    suggestions.suggestions_refresh()
    s = Suggestion.objects.get()
    risk = s.simulation["bounds"]["max_risk"]
    assert s.simulation["bounds"]["max_amount"] == 2002
    before = Policy.objects.count()

    policy = suggestions.suggestion_draft_policy(suggestion_id=s.pk, by=_officer("risk-2"))

    assert Policy.objects.count() == before + 1 and policy.enabled is False
    assert engine.validate(policy.text) == []
    assert "Large invoices" in policy.description
    s.refresh_from_db()
    assert s.status == SuggestionStatus.DRAFTED and s.policy == policy

    def decided(amount, agent=registry.agent):
        return gate.decide(
            agent=agent, operation=registry.post, params={"invoice_id": "X", "amount": amount},
            draft_text=policy.text, draft_replaces=asking.pk,
        )  # fmt: skip

    assert decided(2001).verdict == Verdict.ALLOW  # the pattern, within its bounds
    assert decided(2001).risk_score <= risk
    assert decided(5000).verdict == Verdict.NEEDS_APPROVAL  # above the amount approved
    stranger = make_agent(slug="stranger", business_unit=registry.agent.business_unit,
                          role=make_role("other"))  # fmt: skip
    assert decided(2001, agent=stranger).verdict != Verdict.ALLOW  # not its role
    # without the draft, the pattern still waits: nothing changed until someone enables it
    plain = gate.decide(agent=registry.agent, operation=registry.post,
                        params={"invoice_id": "X", "amount": 2001})  # fmt: skip
    assert plain.verdict == Verdict.NEEDS_APPROVAL


def test_a_standing_suggestion_cannot_be_opened_as_a_policy(db, thresholds):
    seed_history(build_registry())
    suggestions.suggestions_refresh(now=NOW)
    s = Suggestion.objects.get()
    with pytest.raises(Exception) as refused:
        suggestions.suggestion_draft_policy(suggestion_id=s.pk, by=_officer("risk-3"))
    assert refused.value.code == ErrorCode.VALIDATION_FAILED
    assert Suggestion.objects.get().status == SuggestionStatus.OPEN


# --- pages and API ---------------------------------------------------------------------------


@pytest.fixture
def proposed(db, thresholds):
    seed_history(build_registry())
    suggestions.suggestions_refresh(now=NOW)
    return Suggestion.objects.get()


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_policy_owner_sees_the_suggestion_and_the_inbox_badge(proposed):
    officer = _client(_officer("risk-4"))
    page = officer.get("/inbox/suggestions/")
    assert page.status_code == 200
    text = page.content.decode()
    assert (
        "Invoice-Processor agents in Finance: “Post invoice” approved 7 times unchanged and "
        "rejected 1 time in 14 days" in text
    )
    assert "~0.6" in text and "60%" in text
    inbox = officer.get("/inbox/")
    assert 'id="suggestions-badge"' in inbox.content.decode()


def test_open_as_standing_approval_redirects_to_the_prefilled_grant_form(proposed):
    officer = _client(_officer("risk-5"))
    answer = officer.post(f"/inbox/suggestions/{proposed.pk}/standing/")
    assert answer.status_code == 302
    url = urlsplit(answer["Location"])
    assert url.path == "/inbox/standing/new/"
    assert {k: v[0] for k, v in parse_qs(url.query).items()} == {
        "operation": "erp.post-invoice",
        "role": proposed.role.slug,
        "unit": "finance",
        "max_risk": "60",
        "max_amount": "300",
        "daily_limit": "4",
        "days": "7",
        "reason": f"Suggestion #{proposed.pk}: approved as asked 7 times and rejected 1 times "
        "in 14 days.",
    }
    assert Suggestion.objects.get().status == SuggestionStatus.DRAFTED
    # the prefilled form grants as it stands: every value it carries is one the form takes
    assert officer.get(answer["Location"]).status_code == 200
    granted = officer.post(
        "/inbox/standing/new/", {k: v[0] for k, v in parse_qs(url.query).items()}
    )
    assert granted.status_code == 302, granted.content.decode()[:2000]
    standing = StandingApproval.objects.get()
    assert (standing.operation.key, standing.max_risk, standing.daily_limit) == (
        "erp.post-invoice", 60, 4,
    )  # fmt: skip


def test_open_as_draft_policy_redirects_to_its_admin_page(db, thresholds):
    _policy_history(thresholds)
    suggestions.suggestions_refresh()
    s = Suggestion.objects.get()
    answer = _client(_officer("risk-6")).post(f"/inbox/suggestions/{s.pk}/policy/")
    policy = Policy.objects.get(enabled=False)
    assert answer.status_code == 302
    assert answer["Location"] == f"/admin/autonomy/policy/{policy.pk}/change/"


def test_approver_without_change_policy_is_refused_everywhere(proposed):
    person = approver("approver-2")
    assert not person.has_perm("autonomy.change_policy")
    client = _client(person)
    assert client.get("/inbox/suggestions/").status_code == 403
    for verb in ("standing", "policy", "dismiss"):
        assert client.post(f"/inbox/suggestions/{proposed.pk}/{verb}/").status_code == 403
    assert 'id="suggestions-badge"' not in client.get("/inbox/").content.decode()
    api = APIClient()
    api.force_authenticate(person)
    assert_envelope(api.get("/api/v1/approvals/suggestions/"), 403, "permission_denied")
    assert Suggestion.objects.get().status == SuggestionStatus.OPEN


def test_a_permission_granted_to_a_person_directly_is_enough(proposed):
    person = approver("approver-3")
    person.user_permissions.add(Permission.objects.get(codename="change_policy"))
    assert _client(person).get("/inbox/suggestions/").status_code == 200


def test_api_lists_open_suggestions_for_policy_owners(proposed, django_assert_max_num_queries):
    api = APIClient()
    api.force_authenticate(_officer("risk-7"))
    with django_assert_max_num_queries(8):
        answer = api.get("/api/v1/approvals/suggestions/")
    assert answer.status_code == 200
    [row] = answer.json()["results"]
    assert row["id"] == proposed.pk and row["kind"] == "standing"
    assert row["simulation"]["would_allow"] == 9 and row["evidence"]["approved"] == 7
    assert APIClient().get("/api/v1/approvals/suggestions/").status_code == 401


def test_agents_are_refused_the_api(proposed):
    _, token = agent_services.credential_issue(agent=Agent.objects.get(slug="ap-bot"))
    answer = bearer(APIClient(), token).get("/api/v1/approvals/suggestions/")
    assert answer.status_code == 403


def test_acting_on_a_suggestion_that_does_not_exist_answers_not_found(proposed):
    client = _client(_officer("risk-8"))
    answer = client.post("/inbox/suggestions/999999/dismiss/", follow=True)
    assert "No such suggestion." in answer.content.decode()
    assert Suggestion.objects.get().status == SuggestionStatus.OPEN


@pytest.mark.django_db(transaction=True)
def test_two_officers_opening_one_suggestion_at_once_make_one_draft(postgres, thresholds):
    _policy_history(thresholds)
    suggestions.suggestions_refresh()
    s = Suggestion.objects.get()
    officers = [_officer("risk-9"), _officer("risk-10")]
    drafts_before = Policy.objects.filter(enabled=False).count()
    outcomes = at_once(
        *(
            lambda o=o: suggestions.suggestion_draft_policy(suggestion_id=s.pk, by=o)
            for o in officers
        )
    )
    assert sorted(outcomes) == ["ok", ErrorCode.SUGGESTION_NOT_OPEN]
    assert Policy.objects.filter(enabled=False).count() == drafts_before + 1


def test_a_dismissed_pattern_is_proposed_again_once_its_window_has_passed(db, thresholds):
    registry = build_registry()
    seed_history(registry)
    suggestions.suggestions_refresh(now=NOW)
    suggestions.suggestion_dismiss(suggestion_id=Suggestion.objects.get().pk, by=_officer("r-11"))
    later = timezone.now() + timedelta(days=15)
    for n in range(5):  # people keep approving it as asked
        record(registry.agent, registry.post, at=later - timedelta(hours=n + 1), risk=30,
               said=APPROVED)  # fmt: skip
    assert suggestions.suggestions_refresh(now=later)["proposed"] == 1
    assert Suggestion.objects.filter(status=SuggestionStatus.OPEN).count() == 1
    assert Suggestion.objects.filter(status=SuggestionStatus.DISMISSED).count() == 1


def test_a_policy_suggestion_offers_the_draft_policy_button(db, thresholds):
    _policy_history(thresholds)
    suggestions.suggestions_refresh()
    text = _client(_officer("risk-12")).get("/inbox/suggestions/").content.decode()
    assert "Open as draft policy" in text and "Policy change" in text


def test_beat_refreshes_suggestions_through_the_task(db, thresholds, settings):
    from approvals import tasks

    entry = settings.CELERY_BEAT_SCHEDULE["suggestions-refresh"]
    assert entry["task"] == "approvals.tasks.suggestions_refresh"
    _policy_history(thresholds)
    assert tasks.suggestions_refresh.apply().get()["proposed"] == 1
    assert Suggestion.objects.filter(status=SuggestionStatus.OPEN).count() == 1
