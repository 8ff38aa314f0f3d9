"""The MCP gateway at /mcp/, driven by the official ``mcp`` client against the live server
(a real HTTP server in this process; a real Celery worker where an action must execute)."""

import threading

import anyio
import httpx
import httpx2
import pytest
from django.db import connection
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from agents import services as agent_services
from agents.models import Agent
from approvals import services as approvals
from approvals.models import ApprovalRequest
from autonomy import grants
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    AuditRecord,
    AutonomyLevel,
    AutonomySetting,
    ConnectorCall,
    Operation,
)
from tests.approvals.conftest import approver
from tests.conftest import wait_for
from tests.workflows.fixtures import build_world


async def _session_run(url: str, token: str, work):
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(60)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                return await work(session)


@pytest.fixture
def world(transactional_db):
    """Two clerks granted five ERP operations through their role, a senior granted six."""
    return build_world()


@pytest.fixture
def mcp(live_server):
    """``mcp(agent, work)`` runs ``work(session)`` in an initialized MCP client session of
    ``agent`` (a fresh token) against the live gateway."""

    def run(agent, work):
        _, token = agent_services.credential_issue(agent=agent)
        return anyio.run(_session_run, f"{live_server.url}/mcp/", token, work)

    return run


def tool_names(mcp, agent) -> set[str]:
    async def work(session):
        return {tool.name for tool in (await session.list_tools()).tools}

    return mcp(agent, work)


def call(mcp, agent, name, arguments):
    async def work(session):
        return await session.call_tool(name, arguments)

    return mcp(agent, work)


def test_each_agent_sees_exactly_the_operations_it_is_granted_as_tools(mcp, world):
    clerk, other_clerk, senior = world.agents[0], world.agents[1], world.seniors_agents[0]
    grants.grant(target=world.ops["senior-only"], to=clerk)  # a grant to the agent itself

    role_ops = {"erp.extract", "erp.match-po", "erp.post-invoice", "erp.void-invoice",
                "erp.notify"}  # fmt: skip
    assert tool_names(mcp, other_clerk) == role_ops | {"autonomy.action_status"}
    assert tool_names(mcp, clerk) == role_ops | {"erp.senior-only", "autonomy.action_status"}
    assert tool_names(mcp, senior) == role_ops | {"erp.senior-only", "autonomy.action_status"}


def test_a_tool_carries_the_operations_parameter_schema(mcp, world):
    async def work(session):
        return {tool.name: tool for tool in (await session.list_tools()).tools}

    tools = mcp(world.agents[0], work)
    assert tools["erp.post-invoice"].input_schema == world.ops["post-invoice"].params_schema


def test_an_allowed_call_returns_the_executed_outcome(mcp, world, celery_worker):
    result = call(mcp, world.agents[0], "erp.post-invoice", {"amount": 120})

    assert result.is_error is False, result.content
    assert result.structured_content["status"] == ActionStatus.SUCCEEDED
    assert result.structured_content["outcome"]["accepted"] == {"amount": 120}
    action = ActionRequest.objects.get(pk=result.structured_content["action_id"])
    assert action.agent == world.agents[0] and action.status == ActionStatus.SUCCEEDED


def test_a_shadow_call_answers_the_decision_and_executes_nothing(mcp, world):
    clerk = world.agents[0]
    AutonomySetting.objects.create(level=AutonomyLevel.SHADOW, role=clerk.role)

    result = call(mcp, clerk, "erp.post-invoice", {"amount": 120})

    assert result.is_error is False, result.content
    summary = result.structured_content
    assert summary["status"] == ActionStatus.SHADOWED and summary["decision"] == "allow"
    assert summary["executed"] is False and summary["autonomy_level"] == "shadow"
    assert "not executed" in result.content[0].text
    assert not ConnectorCall.objects.exists()
    assert AuditRecord.objects.filter(
        kind="action_decision", action_id=summary["action_id"]
    ).exists()


def test_a_denied_call_is_a_tool_error_with_the_gates_reasons(mcp, world):
    result = call(mcp, world.agents[0], "erp.senior-only", {})

    assert result.is_error is True
    assert "grant_missing" in {r["code"] for r in result.structured_content["reasons"]}
    assert "grant_missing" in result.content[0].text
    assert ActionRequest.objects.get(agent=world.agents[0]).status == ActionStatus.DENIED


def test_an_unknown_tool_is_a_tool_error_not_a_protocol_failure(mcp, world):
    result = call(mcp, world.agents[0], "erp.no-such-thing", {})

    assert result.is_error is True
    assert result.structured_content["error"]["code"] == "operation_unknown"


def test_an_approval_gated_call_waits_and_returns_the_result_once_a_person_approves(
    mcp, world, celery_worker
):
    unit = world.agents[0].business_unit
    unit.approval_threshold = 0
    unit.save(update_fields=["approval_threshold"])
    boss = approver("boss")

    def approve_when_asked():
        try:
            request = wait_for(lambda: ApprovalRequest.objects.first(), what="the approval request")
            approvals.approval_decide(request_id=request.pk, approver=boss, verdict="approve",
                                      channel="inbox")  # fmt: skip
        finally:
            connection.close()  # this thread's own connection

    person = threading.Thread(target=approve_when_asked)
    person.start()
    result = call(mcp, world.agents[0], "erp.post-invoice", {"amount": 5})
    person.join()

    assert result.is_error is False, result.content
    assert result.structured_content["decision"] == "needs_approval"
    assert result.structured_content["status"] == ActionStatus.SUCCEEDED
    assert result.structured_content["outcome"]["accepted"] == {"amount": 5}


def test_a_call_still_waiting_for_approval_says_so_and_its_status_can_be_asked_later(
    mcp, world, settings
):
    settings.AUTONOMY_MCP_WAIT_SECONDS = 0.2
    unit = world.agents[0].business_unit
    unit.approval_threshold = 0
    unit.save(update_fields=["approval_threshold"])

    waiting = call(mcp, world.agents[0], "erp.post-invoice", {"amount": 5})
    action_id = waiting.structured_content["action_id"]
    later = call(mcp, world.agents[0], "autonomy.action_status", {"action_id": action_id})
    stranger = call(mcp, world.agents[1], "autonomy.action_status", {"action_id": action_id})

    assert waiting.is_error is False and "Waiting for approval" in waiting.content[0].text
    assert waiting.structured_content["approval"]["approvers"] == "Portal: Approver"
    assert later.structured_content["status"] == ActionStatus.PENDING_APPROVAL
    assert stranger.is_error is True


def test_a_bad_token_is_refused_with_401_and_the_json_error_body(live_server, world):
    response = httpx.post(
        f"{live_server.url}/mcp/",
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        headers={"Authorization": "Bearer aos_not-a-real-token"},
    )

    assert response.status_code == 401
    assert response.json()["error"]["code"] in ("credential_invalid", "authentication_failed")


def test_a_request_without_a_session_id_is_refused_after_initialize(live_server, world):
    _, token = agent_services.credential_issue(agent=world.agents[0])
    response = httpx.post(
        f"{live_server.url}/mcp/",
        json={"jsonrpc": "2.0", "id": 7, "method": "tools/list"},
        headers={"Authorization": f"Bearer {token}"},
    )

    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600 and response.json()["id"] == 7


def test_get_has_no_stream_and_answers_405(live_server, world):
    _, token = agent_services.credential_issue(agent=world.agents[0])
    response = httpx.get(f"{live_server.url}/mcp/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 405


@pytest.mark.parametrize("extra", [0, 40])
def test_listing_the_granted_operations_takes_the_same_queries_for_few_or_many(
    world, extra, django_assert_max_num_queries
):
    for i in range(extra):
        operation = Operation.objects.create(connector=world.erp, slug=f"op-{i}", name=f"Op {i}")
        grants.grant(target=operation, to=world.clerks)
    agent = Agent.objects.select_related("role").get(pk=world.agents[0].pk)

    with django_assert_max_num_queries(3):
        granted = grants.operations_callable(agent=agent)

    assert len(granted) == 5 + extra


# --- shared memory as tools -------------------------------------------------------------------


def test_granted_memory_operations_are_tools_and_answer_without_a_worker(mcp, world):
    from autonomy.models import Connector, MemoryEntry

    clerk, senior = world.agents[0], world.seniors_agents[0]
    grants.grant(target=Connector.objects.get(slug="memory"), to=clerk.role)

    assert {"memory.read", "memory.write", "memory.delete", "memory.search"} <= tool_names(
        mcp, clerk
    )
    assert not any(name.startswith("memory.") for name in tool_names(mcp, senior))

    async def work(session):
        written = await session.call_tool(
            "memory.write", {"key": "customer:4411", "value": "prefers e-mail"}
        )
        read = await session.call_tool("memory.read", {"key": "customer:4411"})
        return written, read

    written, read = mcp(clerk, work)  # no Celery worker: memory runs in the request

    assert written.is_error is False and written.structured_content["status"] == "succeeded"
    assert read.is_error is False
    assert read.structured_content["outcome"]["value"] == "prefers e-mail"
    assert MemoryEntry.objects.get().agent == clerk
    denied = call(mcp, senior, "memory.read", {"key": "customer:4411"})
    assert denied.is_error is True and "grant_missing" in denied.content[0].text
