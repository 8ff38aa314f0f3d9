"""Access reviews: detection on seeded history, bulk answers through the owning services,
escalation by the clock, and who may see and answer."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import Group
from django.core import mail
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from agents import services as agent_services
from agents.models import Agent, AgentStatus, Credential
from agents.portal_roles import PortalRole, group_name
from agents.services import portal_roles_sync
from autonomy import grants
from autonomy.errors import DomainError
from autonomy.models import ActionRequest, AuditRecord, Operation
from reviews import selectors, services
from reviews.models import AccessReview, Decision, ItemKind, ReviewItem, ReviewStatus
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer
from tests.factories import BusinessUnitFactory, UserFactory

ACTIONS = "/api/v1/actions/"
NOW = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def office_hours():
    with time_machine.travel(NOW, tick=True):
        yield


def person(username: str, role: str):
    portal_roles_sync()
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


def aged(model, pk, **fields):
    """Seed history: move a row's timestamps into the past."""
    model.objects.filter(pk=pk).update(**fields)


def act(agent: Agent, operation: Operation, *, days_ago: int) -> None:
    ActionRequest.objects.create(
        agent=agent,
        operation=operation,
        params={},
        status="succeeded",
        created_at=timezone.now() - timedelta(days=days_ago),
    )


@dataclass
class World:
    unit: object
    busy: Agent
    sleepy: Agent
    fresh: Agent
    orphan: Agent
    elsewhere: Agent
    read: Operation
    export: Operation
    tokens: dict
    credentials: dict


def build_world(*, extra_agents: int = 0) -> World:
    """One unit with an agent at work (but not on everything it holds), a dormant one, a new
    one, one whose owner left, and a dormant agent of another unit."""
    registry = build_registry()
    unit, role = registry.agent.business_unit, registry.agent.role
    read = registry.read
    export, _ = Operation.objects.get_or_create(
        connector=registry.erp, slug="export-ledger", defaults={"name": "Export ledger"}
    )
    owner = UserFactory(username="owner")
    long_ago = timezone.now() - timedelta(days=200)

    def agent(slug, *, unit=unit, owner=owner):
        made = agent_services.agent_register(
            name=slug,
            slug=slug,
            owner=owner,
            business_unit=unit,
            role=role,
            risk_tier=1,
            approved=True,
        )
        aged(Agent, made.pk, created_at=long_ago)
        return Agent.objects.get(pk=made.pk)

    busy, sleepy = agent("busy"), agent("sleepy")
    fresh = agent_services.agent_register(
        name="fresh",
        slug="fresh",
        owner=owner,
        business_unit=unit,
        role=role,
        risk_tier=1,
        approved=True,
    )
    leaver = UserFactory(username="leaver")
    orphan = agent("orphan", owner=leaver)
    leaver.is_active = False
    leaver.save(update_fields=["is_active"])
    elsewhere = agent("elsewhere", unit=BusinessUnitFactory(slug="sales", name="Sales"))
    for n in range(extra_agents):
        agent(f"extra-{n}")
    for held in (busy, sleepy):
        grants.grant(target=read, to=held)
        grants.grant(target=export, to=held)
    # The registry's own agent (ap-bot) is new: it is neither dormant nor reviewed for grants.
    act(busy, read, days_ago=2)
    act(busy, export, days_ago=150)  # long ago: the export grant is unused in the window
    act(sleepy, read, days_ago=100)
    act(orphan, read, days_ago=1)
    tokens, credentials = {}, {}
    for held in (busy, sleepy, orphan):
        credential, token = agent_services.credential_issue(agent=held)
        aged(Credential, credential.pk, created_at=long_ago, last_used_at=timezone.now())
        tokens[held.slug], credentials[held.slug] = token, credential
    never, _ = agent_services.credential_issue(agent=busy, name="spare")
    aged(Credential, never.pk, created_at=long_ago)
    expiring, _ = agent_services.credential_issue(
        agent=busy, name="expiring", expires_at=timezone.now() + timedelta(days=10)
    )
    aged(Credential, expiring.pk, last_used_at=timezone.now())
    credentials["never"], credentials["expiring"] = never, expiring
    return World(unit, busy, sleepy, fresh, orphan, elsewhere, read, export, tokens, credentials)


@pytest.fixture
def world(db) -> World:
    return build_world()


@pytest.fixture
def officer(db):
    return person("risk", PortalRole.RISK_OFFICER)


def found(review) -> set:
    return {
        (item.kind, item.agent.slug, item.evidence.get("target") or item.evidence.get("name") or "")
        for item in review.items.select_related("agent")
    }


# --- detection ------------------------------------------------------------------------------


def test_dormant_and_over_privileged_agents_are_detected_on_seeded_history(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    items = found(review)
    assert (ItemKind.DORMANT, "sleepy", "") in items
    assert (ItemKind.OVER_PRIVILEGED, "busy", "erp.export-ledger") in items
    assert (ItemKind.OVER_PRIVILEGED, "sleepy", "erp.read-invoice") in items
    assert (ItemKind.ORPHANED, "orphan", "") in items
    assert (ItemKind.CREDENTIAL_UNUSED, "busy", "spare") in items
    assert (ItemKind.CREDENTIAL_EXPIRING, "busy", "expiring") in items
    # What is in use, new or in another unit is not asked about.
    assert (ItemKind.OVER_PRIVILEGED, "busy", "erp.read-invoice") not in items
    slugs = {slug for kind, slug, _ in items if kind == ItemKind.DORMANT}
    assert slugs == {"sleepy"}  # not busy, not orphan (acted), not fresh (new), not elsewhere
    assert not any(slug in ("elsewhere", "fresh", "ap-bot") for _, slug, _ in items)
    credential_names = {name for kind, _, name in items if kind.startswith("credential")}
    assert credential_names == {"spare", "expiring"}
    dormant = review.items.get(kind=ItemKind.DORMANT)
    assert dormant.evidence["days_idle"] == 100
    assert dormant.evidence["last_action_at"].startswith("2026-08-17")


def test_a_role_grant_is_listed_as_the_roles(world, officer):
    # The registry's role holds erp.post-invoice; nobody of the unit has posted in 90 days.
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    role_items = review.items.filter(kind=ItemKind.OVER_PRIVILEGED, agent=world.busy).exclude(
        evidence__holder="agent"
    )
    assert [(i.evidence["holder"], i.evidence["target"]) for i in role_items] == [
        ("role", "erp.post-invoice")
    ]


def test_detection_costs_the_same_number_of_queries_for_few_and_many_agents(db):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    world = build_world()
    counts = []
    for extra, period in ((0, "2026-Q1"), (30, "2026-Q2")):
        for n in range(extra):
            more = agent_services.agent_register(
                name=f"x{n}",
                slug=f"x-{n}",
                owner=UserFactory(username=f"o{n}"),
                business_unit=world.unit,
                role=world.busy.role,
                approved=True,
            )
            aged(Agent, more.pk, created_at=timezone.now() - timedelta(days=200))
            grants.grant(target=world.export, to=more)
            agent_services.credential_issue(
                agent=more, expires_at=timezone.now() + timedelta(days=3)
            )
        with CaptureQueriesContext(connection) as queries:
            review = services.review_open(unit=world.unit, period=period)
        # The items are written by one bulk INSERT, which SQLite cuts into batches of its
        # parameter limit; every other statement is one, whatever the number of agents.
        others = [q for q in queries.captured_queries if "reviews_reviewitem" not in q["sql"]]
        counts.append((len(others), review.items.count()))
    (few, few_items), (many, many_items) = counts
    assert many_items >= few_items + 90  # each new agent: dormant, unused grants, a credential
    assert few == many, counts
    assert few <= 10


def test_one_review_per_unit_and_period(world, officer):
    services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    with pytest.raises(DomainError) as refused:
        services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    assert refused.value.code == "conflict"


def test_schedule_opens_the_quarter_once_for_every_unit(world):
    assert services.reviews_schedule() == 2  # finance and sales
    assert services.reviews_schedule() == 0
    assert set(AccessReview.objects.values_list("period", flat=True)) == {"2026-Q4"}


# --- answers --------------------------------------------------------------------------------


def agent_api(token: str) -> APIClient:
    return bearer(APIClient(), token)


def test_a_bulk_revoke_takes_effect_on_the_next_request(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    unused = review.items.get(
        kind=ItemKind.OVER_PRIVILEGED, agent=world.busy, operation=world.export
    )
    dormant = review.items.get(kind=ItemKind.DORMANT, agent=world.sleepy)
    before = agent_api(world.tokens["busy"]).post(
        ACTIONS, {"operation": "erp.export-ledger", "params": {}}, format="json"
    )
    assert before.status_code == 201 and before.json()["decision"] == "allow", before.content

    services.review_answer(
        review=review, item_ids=[unused.pk, dormant.pk], decision="revoke", by=officer
    )

    after = agent_api(world.tokens["busy"]).post(
        ACTIONS, {"operation": "erp.export-ledger", "params": {}}, format="json"
    )
    assert after.json()["decision"] == "deny"
    assert [r["code"] for r in after.json()["reasons"]] == ["grant_missing"]
    still = agent_api(world.tokens["busy"]).post(
        ACTIONS, {"operation": "erp.read-invoice", "params": {}}, format="json"
    )
    assert still.json()["decision"] == "allow"
    retired = agent_api(world.tokens["sleepy"]).post(
        ACTIONS, {"operation": "erp.read-invoice", "params": {}}, format="json"
    )
    assert retired.status_code in (401, 403), retired.content
    assert Agent.objects.get(pk=world.sleepy.pk).status == AgentStatus.RETIRED


def test_keep_leaves_the_access_working_and_the_answer_is_audited(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    unused = review.items.get(
        kind=ItemKind.OVER_PRIVILEGED, agent=world.busy, operation=world.export
    )
    services.review_answer(
        review=review, item_ids=[unused.pk], decision="keep", by=officer, comment="month end"
    )
    response = agent_api(world.tokens["busy"]).post(
        ACTIONS, {"operation": "erp.export-ledger", "params": {}}, format="json"
    )
    assert response.json()["decision"] == "allow"
    record = AuditRecord.objects.get(kind="access_review_answer")
    assert record.actor == "risk" and record.agent_id == world.busy.pk
    assert record.payload["item_id"] == unused.pk and record.payload["decision"] == "keep"
    assert record.payload["review_id"] == review.pk and record.payload["comment"] == "month end"


def test_every_answer_of_a_batch_is_its_own_audit_record(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    credentials = list(review.items.filter(kind__startswith="credential"))
    services.review_answer(
        review=review, item_ids=[i.pk for i in credentials], decision="revoke", by=officer
    )
    records = AuditRecord.objects.filter(kind="access_review_answer")
    assert sorted(r.payload["item_id"] for r in records) == sorted(i.pk for i in credentials)
    assert all(r.payload["effect"] == "credential revoked" for r in records)
    assert not Credential.objects.filter(
        pk__in=[world.credentials["never"].pk, world.credentials["expiring"].pk], revoked_at=None
    ).exists()


def test_answering_every_item_completes_the_review(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    ids = list(review.items.values_list("pk", flat=True))
    services.review_answer(review=review, item_ids=ids[:1], decision="keep", by=officer)
    assert AccessReview.objects.get(pk=review.pk).status == ReviewStatus.OPEN
    services.review_answer(review=review, item_ids=ids[1:], decision="keep", by=officer)
    review.refresh_from_db()
    assert review.status == ReviewStatus.COMPLETED and review.completed_at is not None
    assert AuditRecord.objects.filter(kind="access_review_completed").count() == 1


def test_items_of_another_units_review_are_refused_and_nothing_changes(world, officer):
    mine = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    theirs = services.review_open(unit=world.elsewhere.business_unit, period="2026-Q4")
    foreign = theirs.items.get(kind=ItemKind.DORMANT, agent=world.elsewhere)
    own = mine.items.get(kind=ItemKind.DORMANT)
    with pytest.raises(DomainError) as refused:
        services.review_answer(
            review=mine, item_ids=[own.pk, foreign.pk], decision="revoke", by=officer
        )
    assert refused.value.details == {"items": [foreign.pk]}
    assert Agent.objects.get(pk=world.elsewhere.pk).status == AgentStatus.ACTIVE
    assert Agent.objects.get(pk=world.sleepy.pk).status == AgentStatus.ACTIVE
    assert not ReviewItem.objects.exclude(decision=Decision.PENDING).exists()
    assert not AuditRecord.objects.filter(kind="access_review_answer").exists()


@pytest.mark.parametrize("decision, ids", [("delete", None), ("revoke", ["x"]), ("keep", [])])
def test_bad_answers_are_refused(world, officer, decision, ids):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    if ids is None:
        ids = [review.items.first().pk]
    with pytest.raises(DomainError) as refused:
        services.review_answer(review=review, item_ids=ids, decision=decision, by=officer)
    assert refused.value.code == "validation_failed"


def test_an_answered_item_cannot_be_answered_again(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    item = review.items.get(kind=ItemKind.DORMANT)
    services.review_answer(review=review, item_ids=[item.pk], decision="keep", by=officer)
    with pytest.raises(DomainError) as refused:
        services.review_answer(review=review, item_ids=[item.pk], decision="revoke", by=officer)
    assert refused.value.code == "conflict"
    assert Agent.objects.get(pk=world.sleepy.pk).status == AgentStatus.ACTIVE


# --- escalation -----------------------------------------------------------------------------


def test_a_review_past_due_with_answers_missing_escalates_once_and_mails_risk_officers(
    world, officer, django_capture_on_commit_callbacks
):
    from config.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
        assert services.reviews_escalate(now=review.due_at - timedelta(minutes=1)) == 0
        with django_capture_on_commit_callbacks(execute=True):
            assert services.reviews_escalate(now=review.due_at + timedelta(minutes=1)) == 1
        assert services.reviews_escalate(now=review.due_at + timedelta(days=1)) == 0
    finally:
        app.conf.task_always_eager = before
    review.refresh_from_db()
    assert review.status == ReviewStatus.ESCALATED
    record = AuditRecord.objects.get(kind="access_review_escalated")
    assert record.payload["review_id"] == review.pk and record.payload["pending"] > 0
    assert [m.to for m in mail.outbox] == [[officer.email]]
    assert f"/reviews/{review.pk}/" in mail.outbox[0].body


def test_an_answered_review_never_escalates(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    ids = list(review.items.values_list("pk", flat=True))
    services.review_answer(review=review, item_ids=ids, decision="keep", by=officer)
    assert services.reviews_escalate(now=review.due_at + timedelta(days=1)) == 0


# --- pages ----------------------------------------------------------------------------------


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_risk_officer_opens_a_review_and_revokes_in_bulk_on_the_page(world, officer):
    client = signed_in(officer)
    assert client.get("/reviews/").status_code == 200
    opened = client.post("/reviews/open/", {"unit": world.unit.pk})
    review = AccessReview.objects.get(business_unit=world.unit)
    assert opened.status_code == 302 and opened["Location"] == f"/reviews/{review.pk}/"
    page = client.get(f"/reviews/{review.pk}/")
    assert page.status_code == 200
    assert b"Revoke selected" in page.content and b"role-wide" in page.content
    dormant = review.items.get(kind=ItemKind.DORMANT)
    answered = client.post(
        f"/reviews/{review.pk}/answer/", {"item": [dormant.pk], "decision": "revoke"}
    )
    assert answered.status_code == 302
    assert Agent.objects.get(pk=world.sleepy.pk).status == AgentStatus.RETIRED


def test_review_pages_cost_a_constant_number_of_queries(
    world, officer, django_assert_max_num_queries
):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    client = signed_in(officer)
    with django_assert_max_num_queries(14):
        assert client.get(f"/reviews/{review.pk}/").status_code == 200
    with django_assert_max_num_queries(12):
        assert client.get("/reviews/").status_code == 200


def test_auditor_reads_but_cannot_answer_or_open(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    auditor = person("audit", PortalRole.AUDITOR)
    client = signed_in(auditor)
    page = client.get(f"/reviews/{review.pk}/")
    assert page.status_code == 200 and b"Revoke selected" not in page.content
    item = review.items.get(kind=ItemKind.DORMANT)
    refused = client.post(
        f"/reviews/{review.pk}/answer/", {"item": [item.pk], "decision": "revoke"}
    )
    assert refused.status_code == 403
    assert client.post("/reviews/open/", {"unit": world.unit.pk}).status_code == 403
    assert Agent.objects.get(pk=world.sleepy.pk).status == AgentStatus.ACTIVE


def test_it_admin_answers_but_does_not_open(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    admin = person("ita", PortalRole.IT_ADMIN)
    client = signed_in(admin)
    item = review.items.get(kind=ItemKind.DORMANT)
    done = client.post(f"/reviews/{review.pk}/answer/", {"item": [item.pk], "decision": "keep"})
    assert done.status_code == 302
    assert ReviewItem.objects.get(pk=item.pk).decision == Decision.KEEP
    other = BusinessUnitFactory(slug="ops", name="Ops")
    assert client.post("/reviews/open/", {"unit": other.pk}).status_code == 403


@pytest.mark.parametrize("role", [PortalRole.VIEWER, PortalRole.APPROVER])
def test_people_without_a_review_role_are_refused(world, officer, role):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    client = signed_in(person("someone", role))
    assert client.get("/reviews/").status_code == 403
    assert client.get(f"/reviews/{review.pk}/").status_code == 403
    item = review.items.get(kind=ItemKind.DORMANT)
    posted = client.post(f"/reviews/{review.pk}/answer/", {"item": [item.pk], "decision": "revoke"})
    assert posted.status_code == 403
    assert ReviewItem.objects.get(pk=item.pk).decision == Decision.PENDING


def test_a_units_own_reviewer_group_answers_its_review_only(world, officer):
    group = Group.objects.create(name="Finance reviewers")
    world.unit.approver_group = group
    world.unit.save(update_fields=["approver_group"])
    mine = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    theirs = services.review_open(unit=world.elsewhere.business_unit, period="2026-Q4")
    reviewer = UserFactory(username="fin-reviewer", is_staff=True)
    reviewer.groups.add(group, Group.objects.get(name=group_name(PortalRole.APPROVER)))
    client = signed_in(reviewer)
    listed = client.get("/reviews/")
    assert listed.status_code == 200
    assert [r.pk for r in listed.context["reviews"]] == [mine.pk]
    assert client.get(f"/reviews/{mine.pk}/").status_code == 200
    assert client.get(f"/reviews/{theirs.pk}/").status_code == 403


def test_reviews_for_period_lists_the_evidence_packs_reviews(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    start = datetime(2026, 10, 1, tzinfo=UTC)
    found = list(selectors.reviews_for_period(start=start, end=start + timedelta(days=92)))
    assert [r.pk for r in found] == [review.pk]
    assert found[0].item_count == review.items.count() and found[0].pending_count > 0
    assert list(selectors.reviews_for_period(start=start - timedelta(days=92), end=start)) == []


# --- API ------------------------------------------------------------------------------------


def person_api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_lists_reviews_and_revokes_in_bulk(world, officer):
    review = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    client = person_api(officer)
    listed = client.get("/api/v1/reviews/")
    assert listed.status_code == 200
    [row] = listed.json()["results"]
    assert row["id"] == review.pk and row["pending"] == review.items.count()
    shown = client.get(f"/api/v1/reviews/{review.pk}/").json()
    dormant = next(a for a in shown["answers"] if a["kind"] == "dormant")
    assert dormant["agent"] == "sleepy" and dormant["evidence"]["days_idle"] == 100
    answered = client.post(
        f"/api/v1/reviews/{review.pk}/answer/",
        {"items": [dormant["id"]], "decision": "revoke", "comment": "gone"},
        format="json",
    )
    assert answered.status_code == 200, answered.content
    assert answered.json()[0]["decision"] == "revoke"
    assert Agent.objects.get(pk=world.sleepy.pk).status == AgentStatus.RETIRED


def test_api_refuses_foreign_items_and_bad_answers_with_the_envelope(world, officer):
    from tests.conftest import assert_envelope

    mine = services.review_open(unit=world.unit, period="2026-Q4", by=officer)
    theirs = services.review_open(unit=world.elsewhere.business_unit, period="2026-Q4")
    foreign = theirs.items.get(kind=ItemKind.DORMANT)
    client = person_api(officer)
    url = f"/api/v1/reviews/{mine.pk}/answer/"
    refused = client.post(url, {"items": [foreign.pk], "decision": "revoke"}, format="json")
    assert assert_envelope(refused, 400, "validation_failed")["details"] == {"items": [foreign.pk]}
    bad = client.post(url, {"items": [foreign.pk], "decision": "delete"}, format="json")
    assert_envelope(bad, 400, "validation_failed")
    viewer = person_api(person("viewer", PortalRole.VIEWER))
    assert_envelope(viewer.get("/api/v1/reviews/"), 403, "permission_denied")
    assert Agent.objects.get(pk=world.elsewhere.pk).status == AgentStatus.ACTIVE
