"""The agent SDK against the live API (a real HTTP server in this process; a real Celery
worker where an action must execute)."""

import asyncio
import threading

import httpx
import pytest

from agents import services as agent_services
from approvals import services as approvals
from approvals.models import ApprovalRequest
from autonomy.errors import ErrorCode
from autonomy.models import (
    ActionRequest,
    AutonomyLevel,
    AutonomySetting,
    RolloutPlan,
    RolloutWave,
)
from autonomy_sdk import AsyncClient, Client, Rollout, errors
from tests.approvals.conftest import approver
from tests.conftest import wait_for
from tests.workflows.fixtures import published, step
from workflows.models import RunStatus


@pytest.fixture
def sdk(live_server, world):
    clients = []

    def make(agent=None, **options) -> Client:
        _, token = agent_services.credential_issue(agent=agent or world.agents[0])
        client = Client(live_server.url, token, **options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def test_every_server_error_code_has_a_typed_sdk_error():
    assert {code.value for code in ErrorCode} <= set(errors.CODES)


def test_act_waits_for_the_worker_and_returns_the_outcome(sdk, celery_worker):
    action = sdk().act("erp.post-invoice", {"amount": 120}, reason="monthly run", timeout=60)
    assert action.status == "succeeded" and action.outcome["accepted"] == {"amount": 120}


def test_act_returns_a_shadow_action_at_once_as_decided_and_not_executed(sdk, world):
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, agent=world.agents[0])
    client = sdk()

    action = client.act("erp.post-invoice", {"amount": 120}, timeout=5, poll=0.1)

    assert action.status == "shadowed" and action.decision == "allow"
    assert action.executed is False and action.autonomy_level == "shadow"
    me = client.me()
    assert (me["autonomy_level"], me["autonomy_level_source"]) == ("shadow", "agent clerk-0")


def test_act_waits_through_a_persons_approval(sdk, world, celery_worker):
    unit = world.agents[0].business_unit
    unit.approval_threshold = 0
    unit.save(update_fields=["approval_threshold"])
    boss = approver("boss")

    def approve_when_asked():
        request = wait_for(lambda: ApprovalRequest.objects.first(), what="the approval request")
        approvals.approval_decide(request_id=request.pk, approver=boss, verdict="approve",
                                  channel="inbox")  # fmt: skip

    person = threading.Thread(target=approve_when_asked)
    person.start()
    action = sdk().act("erp.post-invoice", {"amount": 5}, reason="needs a yes", timeout=60,
                       poll=0.1)  # fmt: skip
    person.join()
    assert action.status == "succeeded" and action.decision == "needs_approval"


def test_a_denied_action_raises_with_the_gates_reasons(sdk, world):
    with pytest.raises(errors.ActionDenied) as denied:
        sdk().act("erp.senior-only", {}, reason="not mine")
    assert denied.value.code == "grant_missing"
    assert {r["code"] for r in denied.value.reasons} >= {"grant_missing"}


def test_act_without_waiting_returns_the_decision(sdk):
    action = sdk().act("erp.extract", {}, reason="look", wait=False)
    assert action.decision == "allow" and action.status in ("approved", "executing", "succeeded")


class LoseFirstResponse(httpx.HTTPTransport):
    """A network that delivers the request but loses the first answer."""

    def __init__(self):
        super().__init__()
        self.lost = 0

    def handle_request(self, request):
        response = super().handle_request(request)
        if request.method == "POST" and not self.lost:
            self.lost += 1
            response.close()
            raise httpx.ReadError("connection reset", request=request)
        return response


def test_a_lost_answer_is_retried_with_the_same_key_and_makes_one_action(sdk):
    network = LoseFirstResponse()
    action = sdk(transport=network, backoff=0.01).act("erp.extract", {}, wait=False)
    assert network.lost == 1
    assert ActionRequest.objects.count() == 1 and str(ActionRequest.objects.get().pk) == action.id


def test_typed_errors_for_bad_requests_and_revoked_tokens(sdk, world):
    client = sdk()
    with pytest.raises(errors.BadRequest) as unknown:
        client.act("erp.nope", {})
    assert unknown.value.code == "operation_unknown" and unknown.value.status == 400
    agent_services.agent_credentials_revoke(agent=world.agents[0], reason="rotated")
    with pytest.raises(errors.AuthenticationFailed) as revoked:
        client.me()
    assert revoked.value.code == "credential_revoked"


def test_workflow_tasks_messages_and_claims_through_the_sdk(sdk, world):
    clerk, other = world.agents
    template = published("sdk-flow", [step("gather", None, visible_context=["customer"]),
                                      step("check", None, after=["gather"])])  # fmt: skip
    mine, theirs = sdk(clerk), sdk(other)
    run = mine.start_run(template.key, {"customer": {"id": 1}}, idempotency_key="r-1")
    assert (
        mine.start_run(template.key, {"customer": {"id": 1}}, idempotency_key="r-1")["id"]
        == (run["id"])
    )
    task = mine.next_task()
    assert task.step == "gather" and theirs.next_task() is None
    assert mine.task_context(task.id)["context"] == {"customer": {"id": 1}}
    mine.complete_task(task.id, {"docs": 2})
    check = mine.next_task()
    assert mine.handoff_task(check.id, other.slug, "yours").raw["assignee"] == other.slug
    check = theirs.next_task()
    with pytest.raises(errors.PermissionDenied) as not_mine:
        mine.complete_task(check.id, {})  # handed off: not mine any more
    assert not_mine.value.code == "task_not_yours"
    theirs.send_message(run["id"], {"note": "checking"}, to=clerk.slug)
    assert [m["body"] for m in mine.messages(run["id"])["results"]] == [{"note": "checking"}]
    held = mine.acquire("crm:account:42", run=run["id"])
    waiting = theirs.acquire("crm:account:42", priority=5, run=run["id"])
    assert held.held and not waiting.held and mine.renew(held.id).yield_requested
    mine.release(held.id)
    assert theirs.claim(waiting.id).held
    theirs.complete_task(check.id, {"ok": True})
    assert theirs.run(run["id"])["status"] == RunStatus.SUCCEEDED


def test_the_async_client_makes_the_same_calls(live_server, world):
    _, token = agent_services.credential_issue(agent=world.agents[0])

    async def agent():
        async with AsyncClient(live_server.url, token) as aos:
            me = await aos.me()
            action = await aos.act("erp.extract", {}, reason="async", wait=False)
            with pytest.raises(errors.ActionDenied):
                await aos.act("erp.senior-only", {})
            return me, action

    me, action = asyncio.run(agent())
    assert me["slug"] == world.agents[0].slug and action.decision == "allow"


def test_rollouts_lists_the_plans_the_agent_is_in_with_its_wave_and_level(sdk, world):
    clerk, other = world.agents[0], world.agents[1]
    plan = RolloutPlan.objects.create(
        slug="clerks", name="Clerks", role=clerk.role, held_level=AutonomyLevel.SHADOW,
        current_wave=1, operations=["erp.post-invoice"],
    )  # fmt: skip
    RolloutWave.objects.create(plan=plan, number=1, level=AutonomyLevel.SUPERVISED).agents.add(
        clerk
    )
    RolloutPlan.objects.create(slug="seniors", name="Seniors", role=world.seniors)

    assert sdk(clerk).rollouts() == [
        Rollout(plan="clerks", name="Clerks", wave=1, reached=True, level="supervised",
                operations=["erp.post-invoice"])
    ]  # fmt: skip
    held = sdk(other).rollouts()
    assert [(r.plan, r.reached, r.level) for r in held] == [("clerks", False, "shadow")]


def test_the_async_client_reads_its_rollouts(live_server, world):
    _, token = agent_services.credential_issue(agent=world.agents[0])

    async def agent():
        async with AsyncClient(live_server.url, token) as aos:
            return await aos.rollouts()

    assert asyncio.run(agent()) == []


# --- shared memory ----------------------------------------------------------------------------


@pytest.fixture
def memory_granted(world):
    from autonomy import grants
    from autonomy.models import Connector

    grants.grant(target=Connector.objects.get(slug="memory"), to=world.clerks)
    return world


def test_remember_then_recall_answers_at_once_without_a_worker(sdk, memory_granted):
    writer, reader = sdk(memory_granted.agents[0]), sdk(memory_granted.agents[1])

    written = writer.remember("customer:4411", {"prefers": "e-mail"}, ttl_seconds=3600)

    assert written.status == "succeeded" and written.outcome["created"] is True
    assert reader.recall("customer:4411") == {"prefers": "e-mail"}
    assert reader.recall("customer:9999", default="unknown") == "unknown"
    assert reader.forget("customer:4411") is True
    assert writer.recall("customer:4411") is None


def test_recall_of_another_units_key_is_the_default_and_remember_ungranted_raises(
    sdk, memory_granted
):
    from agents import services as agents
    from tests.factories import BusinessUnitFactory

    sdk(memory_granted.agents[0]).remember("customer:4411", "prefers e-mail")
    outsider = agents.agent_register(
        approved=True, name="Outsider", slug="outsider", owner=memory_granted.officer,
        business_unit=BusinessUnitFactory(slug="it", name="IT"), role=memory_granted.clerks,
    )  # fmt: skip
    senior = sdk(memory_granted.seniors_agents[0])

    assert sdk(outsider).recall("customer:4411", scope="unit", default="none") == "none"
    with pytest.raises(errors.ActionDenied) as denied:
        senior.remember("customer:4411", "poison")
    assert denied.value.code == "grant_missing"


def test_the_async_client_remembers_and_recalls(live_server, memory_granted):
    _, token = agent_services.credential_issue(agent=memory_granted.agents[0])

    async def agent():
        async with AsyncClient(live_server.url, token) as aos:
            await aos.remember("tone", "formal", scope="role")
            return await aos.recall("tone")

    assert asyncio.run(agent()) == "formal"
