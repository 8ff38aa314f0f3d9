"""The live activity stream (selector, page, server-sent events) and one action's trace page."""

import json
import uuid
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from agents.portal_roles import PortalRole, group_name
from approvals import services as approvals
from approvals.models import Channel
from approvals.models import Verdict as ApprovalVerdict
from autonomy import actions as lifecycle
from autonomy import audit, gate, grants
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    AuditRecord,
    Connector,
    ConnectorKind,
    Operation,
    Verdict,
)
from autonomy.observability.activity import ActivityFilters, activity_head, activity_since
from autonomy.policy import services as policy_services
from tests.autonomy.gate_fixtures import Registry
from tests.factories import BusinessUnitFactory, UserFactory, make_agent, make_role

pytestmark = pytest.mark.django_db

# Reading seals first what was appended and not sealed yet (``autonomy.audit.seal``): one
# statement when nothing waits; otherwise the check, a savepoint, the head's lock (two on
# SQLite), the records, their one update, the head's, the release.
SEAL_MAX_QUERIES = 8
# Session, user, "is it an agent?", "does it hold a portal role?", the nav's two permission
# reads; then the page's own reads: head, the records, their agents and actions, the two
# filter menus.
PAGE_MAX_QUERIES = 12 + SEAL_MAX_QUERIES
# The same six around it; the action with its relations, decisions, step runs, records and
# connector receipt.
TRACE_MAX_QUERIES = 11 + SEAL_MAX_QUERIES


@dataclass
class Fleet:
    registry: Registry
    sales_bot: object
    crm_op: Operation


@pytest.fixture
def fleet(registry) -> Fleet:
    """The finance AP bot (ERP) and a sales bot in another unit that uses the CRM."""
    crm = Connector.objects.create(slug="crm", name="CRM", kind=ConnectorKind.CRM)
    crm_op = Operation.objects.create(connector=crm, slug="lookup", name="Look up a customer")
    role = make_role("seller")
    grants.grant(target=crm_op, to=role)
    policy_services.registry_changed()
    sales = BusinessUnitFactory(slug="sales", name="Sales")
    bot = make_agent(slug="sales-bot", business_unit=sales, role=role, risk_tier=1)
    return Fleet(registry=registry, sales_bot=bot, crm_op=crm_op)


def post_invoice(registry: Registry, amount: float = 100, *, key: str | None = None):
    action, _ = lifecycle.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": key or f"INV-{uuid.uuid4().hex[:6]}", "amount": amount},
        reason="monthly close",
    )
    return action


def lookup(fleet: Fleet):
    action, _ = lifecycle.action_request(
        agent=fleet.sales_bot, operation_key="crm.lookup", params={}, reason="a call"
    )
    return action


def decisions(events: list[dict]) -> list[dict]:
    return [e for e in events if e["kind"] == "action_decision"]


def staff(role: PortalRole = PortalRole.VIEWER, username: str = "vera-viewer"):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


# --- the selector ---------------------------------------------------------------------------


def test_an_event_names_its_agent_unit_operation_verdict_and_risk(fleet):
    action = post_invoice(fleet.registry)

    (event,) = decisions(activity_since(after_seq=0))

    assert event["agent"] == {"slug": "ap-bot", "name": "AP bot"}
    assert event["business_unit"] == {"slug": "finance", "name": "Finance"}
    assert event["connector"] == "erp"
    assert event["operation"] == "erp.post-invoice"
    assert event["verdict"] == action.verdict
    assert event["risk_score"] == action.risk_score
    assert event["action_id"] == str(action.pk)
    assert event["summary"].startswith("erp.post-invoice: allow")


def test_events_come_in_trail_order_after_the_given_seq(fleet):
    post_invoice(fleet.registry)
    seen = activity_head()
    second = lookup(fleet)

    events = activity_since(after_seq=seen)

    assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
    assert all(e["seq"] > seen for e in events)
    assert [e["action_id"] for e in decisions(events)] == [str(second.pk)]


def test_filter_by_agent_keeps_only_that_agents_events(fleet):
    post_invoice(fleet.registry)
    lookup(fleet)

    events = activity_since(after_seq=0, filters=ActivityFilters(agent="sales-bot"))

    assert events and {e["agent"]["slug"] for e in events} == {"sales-bot"}


def test_filter_by_business_unit_keeps_only_that_units_events(fleet):
    post_invoice(fleet.registry)
    lookup(fleet)

    events = activity_since(after_seq=0, filters=ActivityFilters(business_unit="finance"))

    assert events and {e["business_unit"]["slug"] for e in events} == {"finance"}


def test_filter_by_connector_keeps_only_actions_on_that_connector(fleet):
    post_invoice(fleet.registry)
    lookup(fleet)

    events = activity_since(after_seq=0, filters=ActivityFilters(connector="crm"))

    assert events and {e["operation"] for e in events} == {"crm.lookup"}


def test_filter_by_decision_keeps_only_actions_with_that_verdict(fleet):
    post_invoice(fleet.registry)
    denied, _ = lifecycle.action_request(
        agent=fleet.registry.agent, operation_key="erp.read-invoice", params={}
    )
    assert denied.verdict == Verdict.DENY

    events = activity_since(after_seq=0, filters=ActivityFilters(decision=Verdict.DENY))

    assert [e["action_id"] for e in events] == [str(denied.pk)]
    assert "grant_missing" in events[0]["summary"]


def test_filter_by_minimum_risk_drops_lower_risk_actions(fleet):
    small = post_invoice(fleet.registry, amount=10)
    large = post_invoice(fleet.registry, amount=900_000)
    assert large.risk_score > small.risk_score

    events = activity_since(after_seq=0, filters=ActivityFilters(min_risk=large.risk_score))

    assert {e["action_id"] for e in events} == {str(large.pk)}


def test_results_are_bounded_by_the_limit_and_the_newest_page_is_the_latest(fleet):
    for _ in range(5):
        post_invoice(fleet.registry)
    head = activity_head()

    assert len(activity_since(after_seq=0, limit=3)) == 3
    newest = activity_since(after_seq=None, limit=3)
    assert [e["seq"] for e in newest] == [head - 2, head - 1, head]
    assert len(activity_since(after_seq=0, limit=10_000)) <= 200


def test_filters_are_read_from_the_query_string_and_bad_values_ignored():
    filters = ActivityFilters.from_query(
        {"agent": "ap-bot", "unit": "finance", "connector": "erp", "decision": "deny",
         "min_risk": "abc"}
    )  # fmt: skip

    assert filters == ActivityFilters("ap-bot", "finance", "erp", "deny", None)


def _many_events(fleet: Fleet, n: int) -> None:
    """``n`` decision records over distinct actions of two agents, written directly."""
    now = timezone.now()
    agents = [fleet.registry.agent, fleet.sales_bot]
    ops = [fleet.registry.post, fleet.crm_op]
    actions = ActionRequest.objects.bulk_create(
        ActionRequest(
            agent=agents[i % 2], operation=ops[i % 2], verdict=Verdict.ALLOW,
            status=ActionStatus.SUCCEEDED, risk_score=i % 90, created_at=now,
        )
        for i in range(n)
    )  # fmt: skip
    with transaction.atomic():
        for action in actions:
            audit.append(
                kind="action_decision",
                agent_id=action.agent_id,
                action_id=action.pk,
                payload={"operation": "x", "decision": {"verdict": "allow", "risk_score": 1}},
            )


@pytest.mark.parametrize("n", [10, 500])
def test_reading_a_batch_takes_the_same_queries_for_10_and_500_events(
    fleet, n, django_assert_max_num_queries
):
    before = activity_head()
    _many_events(fleet, n)
    filters = ActivityFilters(business_unit="sales", connector="crm", min_risk=1)

    with django_assert_max_num_queries(3 + SEAL_MAX_QUERIES):  # seals the n events first
        events = activity_since(after_seq=before)
    with django_assert_max_num_queries(3 + 1):  # nothing left to seal: one look
        filtered = activity_since(after_seq=before, filters=filters)

    assert len(events) == min(n, 200)
    assert filtered and {e["operation"] for e in filtered} == {"crm.lookup"}


# --- the page and the stream ----------------------------------------------------------------


def _messages(response) -> list[dict]:
    """The SSE messages of a (bounded) streamed response: each as {id, event, data}."""
    body = b"".join(response.streaming_content).decode()
    messages = []
    for block in body.split("\n\n"):
        fields: dict = {}
        for line in block.splitlines():
            if line.startswith(":") or ":" not in line:
                continue
            name, value = line.split(":", 1)
            fields[name] = value.strip()
        if fields:
            messages.append(fields)
    return messages


@pytest.fixture
def quick_stream(settings):
    """One poll, then the stream closes: a test reads it to the end in milliseconds."""
    settings.AUTONOMY_ACTIVITY_STREAM_SECONDS = 0
    settings.AUTONOMY_ACTIVITY_POLL_SECONDS = 0.01
    settings.AUTONOMY_ACTIVITY_HEARTBEAT_SECONDS = 60


def test_the_stream_sends_new_events_after_the_given_seq_as_one_batch(fleet, client, quick_stream):
    seen = activity_head()
    first, second = post_invoice(fleet.registry), lookup(fleet)
    client.force_login(staff())

    response = client.get(f"/activity/stream/?after={seen}")

    assert response["Content-Type"] == "text/event-stream"
    (batch,) = [m for m in _messages(response) if m.get("event") == "batch"]
    events = json.loads(batch["data"])
    assert [e["action_id"] for e in decisions(events)] == [str(first.pk), str(second.pk)]
    assert int(batch["id"]) == events[-1]["seq"] == activity_head()


def test_the_stream_resumes_after_the_last_event_id(fleet, client, quick_stream):
    post_invoice(fleet.registry)
    seen = activity_head()
    later = lookup(fleet)
    client.force_login(staff())

    response = client.get("/activity/stream/?after=0", HTTP_LAST_EVENT_ID=str(seen))

    (batch,) = [m for m in _messages(response) if m.get("event") == "batch"]
    assert [e["action_id"] for e in decisions(json.loads(batch["data"]))] == [str(later.pk)]


def test_a_filtered_stream_moves_its_id_past_events_it_does_not_send(fleet, client, settings):
    settings.AUTONOMY_ACTIVITY_STREAM_SECONDS = 0
    settings.AUTONOMY_ACTIVITY_HEARTBEAT_SECONDS = 0
    seen = activity_head()
    post_invoice(fleet.registry)
    client.force_login(staff())

    response = client.get(f"/activity/stream/?after={seen}&connector=crm")

    messages = _messages(response)
    assert not [m for m in messages if m.get("event") == "batch"]
    assert [int(m["id"]) for m in messages if "id" in m] == [activity_head()]


def test_the_page_lists_the_newest_events_with_links_to_their_traces(
    fleet, client, django_assert_max_num_queries
):
    action = post_invoice(fleet.registry)
    client.force_login(staff())

    with django_assert_max_num_queries(PAGE_MAX_QUERIES):
        response = client.get("/activity/?unit=finance")

    assert response.status_code == 200
    assert f'href="/actions/{action.pk}/trace/"'.encode() in response.content
    assert b"sales-bot" not in response.content
    assert f'data-head="{activity_head()}"'.encode() in response.content


@pytest.mark.parametrize("url", ["/activity/", "/activity/stream/"])
def test_anonymous_visitors_are_sent_to_sign_in(client, url):
    response = client.get(url)

    assert response.status_code == 302
    assert "login" in response["Location"]


def test_an_agents_service_user_is_refused(registry, client):
    client.force_login(registry.agent.service_user)

    assert client.get("/activity/").status_code == 403
    assert client.get("/activity/stream/").status_code == 403
    action = post_invoice(registry)
    assert client.get(f"/actions/{action.pk}/trace/").status_code == 403


def test_a_signed_in_person_without_a_portal_role_is_refused(client, registry):
    client.force_login(UserFactory(username="nobody", is_staff=True))  # staff, but no role
    action, _ = lifecycle.action_request(
        agent=registry.agent, operation_key="erp.read-invoice", params={}, reason="look"
    )

    assert client.get("/activity/").status_code == 403
    assert client.get(f"/actions/{action.pk}/trace/").status_code == 403


# --- the trace ------------------------------------------------------------------------------


def _approved_and_run(registry: Registry) -> ActionRequest:
    """An action a person approved and the connector ran, with its outcome recorded."""
    action, _ = lifecycle.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": "INV-42", "amount": 4200},
        reason="monthly close",
        approval=gate.ApprovalAsk(reason="Large invoices need a person."),
    )
    approver = staff(PortalRole.APPROVER, username="anna-approver")
    approvals.approval_decide(
        request_id=action.approval.pk,
        approver=approver,
        verdict=ApprovalVerdict.APPROVE,
        channel=Channel.INBOX,
        comment="checked the PO",
    )
    now = timezone.now()
    ActionRequest.objects.filter(pk=action.pk).update(
        status=ActionStatus.SUCCEEDED, started_at=now, finished_at=now, attempts=1,
        outcome={"document": "FI-4711"},
    )  # fmt: skip
    with transaction.atomic():
        audit.append(
            kind="action_outcome",
            actor="worker",
            agent_id=action.agent_id,
            action_id=action.pk,
            payload={"status": "succeeded", "outcome": {"document": "FI-4711"}, "error": None},
        )
    return action


def test_the_trace_tells_request_reasons_policies_risk_approval_and_outcome(
    registry, client, django_assert_max_num_queries
):
    action = _approved_and_run(registry)
    client.force_login(staff())

    with django_assert_max_num_queries(TRACE_MAX_QUERIES):
        response = client.get(f"/actions/{action.pk}/trace/")

    page = response.content.decode()
    assert response.status_code == 200
    assert "monthly close" in page and "INV-42" in page
    assert "approval_gate" in page and "Large invoices need a person." in page
    assert "baseline" in page  # the Cedar policy that permitted it
    assert "role:invoice-processor" in page  # the grant
    assert 'data-factor="amount"' in page
    assert "anna-approver" in page and "checked the PO" in page and "via inbox" in page
    assert "FI-4711" in page
    records = AuditRecord.objects.filter(action_id=action.pk)
    # The release is decided again (``actions.action_release``), after the people's decision.
    assert [r.kind for r in records] == [
        "action_decision", "approval_opened", "approval_decision", "action_released",
        "action_outcome",
    ]  # fmt: skip
    for record in records:
        assert f"#{record.seq}" in page and record.hash[:10] in page


def test_the_trace_takes_the_same_queries_with_a_long_history(
    registry, client, django_assert_max_num_queries
):
    action = _approved_and_run(registry)
    with transaction.atomic():
        for i in range(50):
            audit.append(kind="note", action_id=action.pk, payload={"i": i})
    client.force_login(staff())

    with django_assert_max_num_queries(TRACE_MAX_QUERIES):
        response = client.get(f"/actions/{action.pk}/trace/")

    # 4 of its own records before the release was decided again, and the release (5), then 50.
    assert response.content.decode().count('<tr data-seq="') == 55


def test_the_trace_of_an_unknown_action_is_not_found(client, db):
    client.force_login(staff())

    assert client.get(f"/actions/{uuid.uuid4()}/trace/").status_code == 404


def test_admin_changes_are_left_out_unless_asked_for(fleet):
    assert AuditRecord.objects.filter(kind="model_change").exists()

    kinds = {e["kind"] for e in activity_since(after_seq=0)}
    with_admin = {e["kind"] for e in activity_since(after_seq=0, filters=ActivityFilters(
        admin_changes=True))}  # fmt: skip

    assert "model_change" not in kinds
    assert "model_change" in with_admin


# --- links to the trace from other pages ----------------------------------------------------


def test_the_inbox_detail_links_to_the_actions_trace(registry, client):
    action, _ = lifecycle.action_request(
        agent=registry.agent,
        operation_key="erp.post-invoice",
        params={"invoice_id": "INV-9", "amount": 90},
        approval=gate.ApprovalAsk(reason="A person looks first."),
    )
    client.force_login(staff(PortalRole.APPROVER, username="anna-approver"))

    response = client.get(f"/inbox/{action.approval.pk}/")

    assert f'href="/actions/{action.pk}/trace/"'.encode() in response.content


def test_the_run_timeline_links_its_steps_actions_to_their_traces(client, eager):  # noqa: F811
    from tests.workflows.fixtures import build_world, published, step
    from workflows import services as workflows
    from workflows.models import StepRun

    world = build_world()
    template = published(
        "one-post",
        [step("post", "post-invoice", input_map={"amount": "$.amount"}, approval="always")],
    )
    run = workflows.run_start(template=template, context={"amount": 5}, by=world.officer)
    action_id = StepRun.objects.get(run=run).action_id
    assert action_id is not None
    client.force_login(world.officer)

    response = client.get(f"/workflows/runs/{run.pk}/")

    assert f'href="/actions/{action_id}/trace/"'.encode() in response.content
