"""The grouped inbox: similar waiting requests listed as groups, opened as one screen and
decided in one action, each member on its own record under quorum and separation of duties."""

from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from guardian.shortcuts import assign_perm
from rest_framework.test import APIClient

from approvals import groups, services
from approvals.models import ApprovalRequest, ApprovalStatus, Channel, Decision
from autonomy.errors import DomainError
from autonomy.models import ActionRequest, ActionStatus, AuditRecord, Operation
from tests.approvals.conftest import approver, pending_action
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import assert_envelope, at_once, bearer
from tests.factories import BusinessUnitFactory, make_agent, make_role

DECIDE = "approvals.decide_approvalrequest"
LATER = timezone.now() + timedelta(days=1)


def waiting_group(registry, n: int = 3, *, start: int = 0) -> list[ApprovalRequest]:
    """``n`` pending invoice postings of the registry's agent, alike: one group."""
    actions = [pending_action(registry, amount=100 + i, key=f"g-{start + i}") for i in range(n)]
    return list(ApprovalRequest.objects.filter(action__in=actions).order_by("created_at"))


def key_of(request: ApprovalRequest) -> str:
    band = next(b for b, low, high in groups.RISK_BANDS if low <= request.risk_score < high)
    return str(
        groups.GroupKey(request.action.operation_id, request.agent.role_id,
                        request.business_unit_id, band)
    )  # fmt: skip


def decide_group(user, key, verdict="approve", **kwargs):
    return services.approvals_decide_group(
        approver=user, key=key, verdict=verdict, channel=Channel.INBOX,
        until=kwargs.pop("until", LATER), **kwargs,
    )  # fmt: skip


# --- the grouped list --------------------------------------------------------------------


def seed(agent, operation, risk: int, group: Group, params=None) -> ApprovalRequest:
    """A waiting request written straight to the tables: the selector is what is tested."""
    action = ActionRequest.objects.create(
        agent=agent, operation=operation, params=params or {"n": risk}, verdict="needs_approval",
        status=ActionStatus.PENDING_APPROVAL, risk_score=risk, created_at=timezone.now(),
    )  # fmt: skip
    request = ApprovalRequest.objects.create(
        action=action, agent=agent, business_unit=agent.business_unit, subject="x",
        risk_score=risk, approver_group=group, expires_at=LATER,
    )  # fmt: skip
    assign_perm(DECIDE, group, request)
    return request


@pytest.fixture
def mixed(db):
    """Three agents in two units and two roles, two operations, risks across the bands; and
    requests for another group of approvers that Ann must never see."""
    registry = build_registry()
    ops = [registry.post, registry.read]
    other_unit = BusinessUnitFactory(slug="it", name="IT")
    agents = [
        registry.agent,
        make_agent(slug="ap-2", business_unit=registry.agent.business_unit,
                   role=registry.agent.role),
        make_agent(slug="helpdesk", business_unit=other_unit, role=make_role("helper")),
    ]  # fmt: skip
    ann = approver("ann")
    mine, theirs = ann.groups.get(), Group.objects.create(name="Strangers")
    seeded = []
    for i in range(60):
        agent, op = agents[i % 3], ops[(i // 3) % 2]
        seeded.append(seed(agent, op, (i * 7) % 100, mine))
    for _ in range(5):
        seed(agents[0], ops[0], 50, theirs)
    return ann, seeded


def test_groups_match_a_hand_count(mixed):
    ann, seeded = mixed
    by_hand = Counter(key_of(r) for r in seeded)
    rows = groups.groups_named(groups.inbox_groups(user=ann).groups)
    assert {r["key"]: r["size"] for r in rows} == dict(by_hand)
    for row in rows:
        members = [r for r in seeded if key_of(r) == row["key"]]
        assert row["risk_min"] == min(r.risk_score for r in members)
        assert row["risk_max"] == max(r.risk_score for r in members)
        assert row["agents"] == len({r.agent_id for r in members})
    assert [r["size"] for r in rows] == sorted((r["size"] for r in rows), reverse=True)


def test_a_groups_members_are_its_key(mixed):
    ann, seeded = mixed
    key = key_of(seeded[0])
    members = groups.group_members(user=ann, key=groups.group_key_parse(key))
    assert set(members.values_list("pk", flat=True)) == {r.pk for r in seeded if key_of(r) == key}


@pytest.mark.parametrize(
    "text", ["", "op-1", "op-1.role-2.unit-3.risk-huge", "op-x.role-2.unit-3.risk-low",
             "op-1.role-2.unit-3.risk-low/../", "op-1.role-2.unit-3.risk-low.extra"],
)  # fmt: skip
def test_a_key_that_names_no_group_is_refused(text):
    assert groups.group_key_parse(text) is None


def test_parameters_spread_numbers_by_min_median_max_and_text_by_top_values():
    spread = groups.params_spread(
        [{"amount": 10, "id": "A"}, {"amount": 30, "id": "A"}, {"amount": 20.5, "id": "B"},
         {"amount": 5, "id": "C", "tags": ["x"]}]
    )  # fmt: skip
    by_name = {p["name"]: p for p in spread}
    assert by_name["amount"] == {
        "name": "amount", "kind": "number", "count": 4, "min": 5, "median": 15.25, "max": 30,
    }  # fmt: skip
    assert by_name["id"]["top"] == [("A", 2), ("B", 1), ("C", 1)]
    assert by_name["id"]["distinct"] == 3
    assert by_name["tags"]["top"] == [('["x"]', 1)] and by_name["tags"]["count"] == 1


def test_the_grouped_inbox_costs_the_same_queries_for_few_and_many_groups(
    mixed, client, django_assert_max_num_queries
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    ann, seeded = mixed
    client.force_login(ann)
    with CaptureQueriesContext(connection) as many:
        assert client.get("/inbox/groups/").status_code == 200
    ApprovalRequest.objects.filter(pk__in=[r.pk for r in seeded[1:]]).update(status="expired")
    with CaptureQueriesContext(connection) as few:
        response = client.get("/inbox/groups/")
    assert response.status_code == 200 and response.context["page_obj"].paginator.count == 1
    assert len(few.captured_queries) == len(many.captured_queries) <= 12


def test_the_group_page_costs_the_same_queries_for_ten_and_fifty_members(db, client):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    registry = build_registry()
    ann = approver("ann")
    group = ann.groups.get()
    members = [seed(registry.agent, registry.post, 50, group) for _ in range(10)]
    key = key_of(members[0])
    client.force_login(ann)
    with CaptureQueriesContext(connection) as ten:
        assert client.get(f"/inbox/groups/{key}/").status_code == 200
    for _ in range(40):
        seed(registry.agent, registry.post, 55, group)
    with CaptureQueriesContext(connection) as fifty:
        response = client.get(f"/inbox/groups/{key}/")
    assert response.context["group"]["size"] == 50
    assert len(fifty.captured_queries) == len(ten.captured_queries)


# --- deciding a group ----------------------------------------------------------------------


@pytest.mark.django_db
def test_a_group_decision_writes_one_decision_and_one_audit_record_per_member():
    registry = build_registry()
    members = waiting_group(registry, 4)
    key = key_of(members[0])
    assert {key_of(m) for m in members} == {key}
    outcome = decide_group(approver("ann"), key, comment="all alike")
    assert (outcome.decided, outcome.settled, outcome.waiting) == (4, 4, 0)
    for member in members:
        member.refresh_from_db()
        assert member.status == ApprovalStatus.APPROVED and member.approvals == 1
        assert Decision.objects.filter(request=member).count() == 1
        records = AuditRecord.objects.filter(kind="approval_decision", action_id=member.action_id)
        assert records.count() == 1
        assert records.get().payload["group"] == key
        assert records.get().payload["comment"] == "all alike"
        assert ActionRequest.objects.get(pk=member.action_id).status == ActionStatus.APPROVED


@pytest.mark.django_db
def test_rejecting_a_group_stops_every_member():
    registry = build_registry()
    members = waiting_group(registry, 3)
    outcome = decide_group(approver("ann"), key_of(members[0]), "reject")
    assert outcome.settled == 3
    statuses = ActionRequest.objects.filter(approval__in=members).values_list("status", flat=True)
    assert set(statuses) == {ActionStatus.DENIED}


@pytest.mark.django_db
def test_the_agents_owner_deciding_a_group_is_recorded_on_each_member_but_settles_none():
    registry = build_registry()
    members = waiting_group(registry, 3)
    owner = registry.agent.owner
    owner.groups.add(members[0].approver_group)
    key = key_of(members[0])
    outcome = decide_group(owner, key)
    assert (outcome.decided, outcome.settled, outcome.waiting) == (3, 0, 3)
    for member in members:
        member.refresh_from_db()
        assert member.status == ApprovalStatus.PENDING and member.approvals == 1
    outcome = decide_group(approver("ann"), key)
    assert (outcome.decided, outcome.settled) == (3, 3)
    assert Decision.objects.filter(request__in=members).count() == 6


@pytest.mark.django_db
def test_a_quorum_of_two_holds_for_each_member():
    registry = build_registry()
    members = waiting_group(registry, 3)
    ApprovalRequest.objects.filter(pk__in=[m.pk for m in members]).update(quorum=2)
    key = key_of(members[0])
    ann, bob = approver("ann"), approver("bob")
    assert decide_group(ann, key).waiting == 3
    again = decide_group(ann, key)  # Ann's second go counts nothing
    assert again.decided == 0 and "you had decided already" in again.skipped[0]
    assert set(
        ApprovalRequest.objects.filter(pk__in=[m.pk for m in members]).values_list(
            "status", "approvals"
        )
    ) == {(ApprovalStatus.PENDING, 1)}
    assert decide_group(bob, key).settled == 3


@pytest.mark.django_db
def test_someone_outside_the_groups_approvers_can_neither_see_nor_decide_it(client):
    registry = build_registry()
    members = waiting_group(registry, 2)
    key = key_of(members[0])
    eve = approver("eve", group="Strangers")
    with pytest.raises(DomainError) as exc:
        decide_group(eve, key)
    assert exc.value.code == "not_found"
    client.force_login(eve)
    assert client.get(f"/inbox/groups/{key}/").status_code == 404
    until = timezone.now().isoformat()
    response = client.post(f"/inbox/groups/{key}/decide/", {"verdict": "approve", "until": until})
    assert response.status_code == 404
    assert not Decision.objects.exists()


@pytest.mark.django_db
def test_members_that_arrived_after_the_page_was_shown_are_left_waiting():
    registry = build_registry()
    members = waiting_group(registry, 3)
    newest = members[-1]
    ApprovalRequest.objects.filter(pk=newest.pk).update(
        created_at=members[1].created_at + timedelta(seconds=5)
    )
    outcome = decide_group(approver("ann"), key_of(members[0]), until=members[1].created_at)
    assert outcome.decided == 2
    newest.refresh_from_db()
    assert newest.status == ApprovalStatus.PENDING and not newest.decisions.exists()


@pytest.mark.django_db
def test_excluded_members_are_left_waiting():
    registry = build_registry()
    members = waiting_group(registry, 3)
    outcome = decide_group(approver("ann"), key_of(members[0]), exclude=[members[0].pk])
    assert outcome.decided == 2
    members[0].refresh_from_db()
    assert members[0].status == ApprovalStatus.PENDING


@pytest.mark.django_db
def test_a_group_is_approved_or_rejected_never_changed_or_redirected():
    registry = build_registry()
    members = waiting_group(registry, 1)
    for verdict in ("approve_with_changes", "redirect", "maybe"):
        with pytest.raises(DomainError) as exc:
            decide_group(approver(f"ann-{verdict}"), key_of(members[0]), verdict)
        assert exc.value.code == "validation_failed"


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_decision_by_the_same_person_on_a_member_is_not_counted_twice(postgres):
    registry = build_registry()
    members = waiting_group(registry, 12)
    ids = [m.pk for m in members]
    ApprovalRequest.objects.filter(pk__in=ids).update(quorum=2)
    key = key_of(members[0])
    ann = approver("ann")
    outcomes = []

    def one(pk):
        return lambda: services.approval_decide(
            request_id=pk, approver=ann, verdict="approve", channel=Channel.API
        )

    def group():
        outcomes.append(decide_group(ann, key))

    results = at_once(group, *(one(pk) for pk in ids[::2]))
    assert results[0] == "ok" and set(results[1:]) <= {"ok", "already_decided"}, results
    for member in ApprovalRequest.objects.filter(pk__in=ids):
        assert member.decisions.count() == 1, member.pk
        assert (member.status, member.approvals) == (ApprovalStatus.PENDING, 1)
    records = AuditRecord.objects.filter(kind="approval_decision", action_id__in=[
        m.action_id for m in members])  # fmt: skip
    assert records.count() == 12
    assert outcomes[0].decided + results[1:].count("ok") == 12


@pytest.mark.django_db(transaction=True)
def test_a_member_decided_concurrently_by_someone_else_is_skipped_not_decided_twice(postgres):
    registry = build_registry()
    members = waiting_group(registry, 12)
    ids = [m.pk for m in members]
    key = key_of(members[0])
    ann, bob = approver("ann"), approver("bob")
    outcomes = []

    def one(pk):
        return lambda: services.approval_decide(
            request_id=pk, approver=bob, verdict="reject", channel=Channel.API
        )

    def group():
        outcomes.append(decide_group(ann, key))

    results = at_once(group, *(one(pk) for pk in ids[::3]))
    assert results[0] == "ok" and set(results[1:]) <= {"ok", "approval_not_pending"}, results
    for member in ApprovalRequest.objects.filter(pk__in=ids):
        assert member.decisions.count() == 1, member.pk
        assert member.status in (ApprovalStatus.APPROVED, ApprovalStatus.REJECTED)
    assert outcomes[0].decided + results[1:].count("ok") == 12
    assert Decision.objects.filter(approver=ann).count() == outcomes[0].decided


# --- the pages ---------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_group_page_shows_the_spread_the_sample_and_what_the_owner_cannot_settle(client):
    registry = build_registry()
    members = waiting_group(registry, 7)
    owner = registry.agent.owner
    owner.is_staff = True
    owner.save()
    owner.groups.add(members[0].approver_group)
    client.force_login(owner)
    key = key_of(members[0])
    listing = client.get("/inbox/groups/").content.decode()
    assert f"/inbox/groups/{key}/" in listing and "7<small>×</small>" in listing
    page = client.get(f"/inbox/groups/{key}/")
    group = page.context["group"]
    assert group["size"] == 7 and group["owned"] == 7
    amount = next(p for p in group["params"] if p["name"] == "amount")
    assert (amount["min"], amount["median"], amount["max"]) == (100, 103, 106)
    assert len(group["sample"]) == 5
    text = page.content.decode()
    assert "7 × post invoice by" in text and 'id="group-owned"' in text
    assert "/inbox/standing/new/?operation=erp.post-invoice&amp;role=invoice-processor" in text


@pytest.mark.django_db
def test_deciding_a_group_from_its_page_says_what_happened(client):
    registry = build_registry()
    members = waiting_group(registry, 3)
    ann = approver("ann")
    client.force_login(ann)
    key = key_of(members[0])
    page = client.get(f"/inbox/groups/{key}/")
    until = page.context["form"].initial["until"].isoformat()
    response = client.post(
        f"/inbox/groups/{key}/decide/",
        {"verdict": "approve", "until": until, "comment": "ok", "exclude": [str(members[0].pk)]},
        follow=True,
    )
    assert response.redirect_chain[-1][0] == f"/inbox/groups/{key}/"  # one left: excluded
    assert "You approved 2 requests." in response.content.decode()
    assert Decision.objects.filter(approver=ann).count() == 2


# --- the API -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_approvers_list_and_decide_groups_through_the_api_and_agents_never_can():
    registry = build_registry()
    members = waiting_group(registry, 3)
    key = key_of(members[0])
    api = APIClient()
    api.force_authenticate(approver("ann"))
    listed = api.get("/api/v1/approvals/groups/").json()["results"]
    assert [(g["key"], g["size"], g["operation"]) for g in listed] == [(key, 3, "erp.post-invoice")]
    answer = api.post(
        f"/api/v1/approvals/groups/{key}/decide/",
        {"verdict": "approve", "until": listed[0]["newest"]},
        format="json",
    )
    assert answer.status_code == 200, answer.content
    assert answer.json() == {"decided": 3, "settled": 3, "waiting": 0, "skipped": []}
    agent = bearer(APIClient(), registry.token)
    assert_envelope(agent.get("/api/v1/approvals/groups/"), 403, "permission_denied")


@pytest.mark.django_db
def test_the_group_api_refuses_bad_bodies_and_unknown_groups_with_the_envelope():
    registry = build_registry()
    members = waiting_group(registry, 1)
    key = key_of(members[0])
    api = APIClient()
    api.force_authenticate(approver("ann"))
    url = f"/api/v1/approvals/groups/{key}/decide/"
    assert_envelope(api.post(url, {"verdict": "approve"}, format="json"), 400, "validation_failed")
    assert_envelope(
        api.post(url, {"verdict": "redirect", "until": LATER.isoformat()}, format="json"),
        400, "validation_failed",
    )  # fmt: skip
    other = key.replace(".unit-", ".unit-9")
    assert_envelope(
        api.post(f"/api/v1/approvals/groups/{other}/decide/",
                 {"verdict": "approve", "until": LATER.isoformat()}, format="json"),
        404, "not_found",
    )  # fmt: skip
    assert Operation.objects.exists() and not Decision.objects.exists()


@pytest.mark.django_db
def test_rollout_promotions_are_never_grouped(client):
    from autonomy.rollouts import services as rollouts
    from tests.approvals.conftest import officer, seed_plan

    registry = build_registry()
    plan = seed_plan(registry)
    rollouts.promotion_propose(plan_id=plan.pk, by=officer("paula"))
    members = waiting_group(registry, 2)
    olga = officer("olga")
    olga.groups.add(members[0].approver_group)
    grouped = groups.inbox_groups(user=olga)
    assert [(g["size"], g["action__operation_id"]) for g in grouped.groups] == [
        (2, registry.post.pk)
    ]
    assert grouped.promotions == 1
    client.force_login(olga)
    assert "1 rollout promotion is never grouped" in client.get("/inbox/groups/").content.decode()


@pytest.mark.django_db
def test_a_group_key_the_api_cannot_parse_is_a_json_404():
    api = APIClient()
    api.force_authenticate(approver("ann"))
    answer = api.post(
        "/api/v1/approvals/groups/op-1.role-1.unit-1.risk-huge/decide/",
        {"verdict": "approve", "until": LATER.isoformat()},
        format="json",
    )
    assert_envelope(answer, 404, "not_found")
