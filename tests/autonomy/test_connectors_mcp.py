"""The MCP client connector against a real MCP server from the official SDK (MCPServer over
streamable HTTP, in a subprocess): tool import, one call per action, no call on redelivery."""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import time_machine

from autonomy import actions, connectors, grants
from autonomy.connectors import services
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    Connector,
    ConnectorCall,
    ConnectorKind,
    Operation,
)
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import wait_for
from tests.realparts import free_port

pytestmark = pytest.mark.django_db

TOKEN = "mcp-tok-4b3a2c1d-very-secret"
SERVER = Path(__file__).with_name("mcp_ticket_server.py")


class TicketServer:
    def __init__(self, url: str, calls_file: Path):
        self.url, self.calls_file = url, calls_file

    def calls(self) -> list[str]:
        return self.calls_file.read_text().splitlines() if self.calls_file.exists() else []


@pytest.fixture(scope="module")
def mcp_server(tmp_path_factory):
    import socket

    port = free_port()
    calls_file = tmp_path_factory.mktemp("mcp") / "calls.txt"
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), str(port), str(calls_file), TOKEN],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip

    def listening():
        assert proc.poll() is None, proc.stdout.read().decode()
        with socket.socket() as sock:
            return sock.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, what="the MCP server listening")
        yield TicketServer(f"http://127.0.0.1:{port}/mcp", calls_file)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


@pytest.fixture
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


def mcp_connector(url: str) -> Connector:
    connector = Connector.objects.create(
        slug="helpdesk",
        name="Help desk",
        kind=ConnectorKind.MCP,
        config={"url": url, "timeout_seconds": 10, "auth": {"type": "bearer", "secret": "token"}},
    )
    services.connector_secret_set(connector=connector, name="token", value=TOKEN, by=None)
    return connector


def test_importing_the_servers_tools_creates_one_operation_per_tool(mcp_server):
    connector = mcp_connector(mcp_server.url)

    services.connector_import_mcp_tools(connector=connector, by=None)

    ops = {op.slug: op for op in Operation.objects.filter(connector=connector)}
    assert set(ops) == {"create_ticket", "get_ticket"}
    create = ops["create_ticket"]
    assert create.config["tool"] == "create_ticket" and create.name == "Create ticket"
    assert create.params_schema["properties"]["title"]["type"] == "string"
    assert create.params_schema["required"] == ["title"]


def test_a_reimport_updates_the_operations_and_keeps_curated_fields(mcp_server):
    connector = mcp_connector(mcp_server.url)
    services.connector_import_mcp_tools(connector=connector, by=None)
    Operation.objects.filter(connector=connector, slug="create_ticket").update(sensitivity=4)

    services.connector_import_mcp_tools(connector=connector, by=None)

    assert Operation.objects.filter(connector=connector).count() == 2
    assert Operation.objects.get(connector=connector, slug="create_ticket").sensitivity == 4


def test_an_executed_action_calls_the_tool_once_and_a_redelivery_does_not_call_again(
    mcp_server, office_hours
):
    registry = build_registry()
    connector = mcp_connector(mcp_server.url)
    services.connector_import_mcp_tools(connector=connector, by=None)
    grants.grant(target=connector, to=registry.agent.role)
    before = len(mcp_server.calls())

    action, _ = actions.action_request(
        agent=registry.agent,
        operation_key="helpdesk.create_ticket",
        params={"title": "printer on fire"},
        reason="user report",
    )
    assert action.status == ActionStatus.APPROVED, action.reasons
    actions.action_execute(action_id=action.pk)
    actions.action_execute(action_id=action.pk)  # a redelivered task
    replay = connectors.call(
        operation=action.operation, params=action.params, idempotency_key=str(action.pk)
    )

    action = ActionRequest.objects.get(pk=action.pk)
    assert action.status == ActionStatus.SUCCEEDED, action.error
    assert action.outcome["data"]["title"] == "printer on fire"
    assert replay["replayed"] is True and replay["data"] == action.outcome["data"]
    assert mcp_server.calls()[before:] == ["printer on fire"]


def test_a_refused_session_fails_the_call_without_the_secret_and_leaves_no_receipt(mcp_server):
    connector = mcp_connector(mcp_server.url)
    services.connector_import_mcp_tools(connector=connector, by=None)
    services.connector_secret_set(
        connector=connector, name="token", value="wrong-secret-x", by=None
    )
    operation = Operation.objects.get(connector=connector, slug="get_ticket")

    with pytest.raises(connectors.ConnectorError) as failure:
        connectors.call(operation=operation, params={"number": "1"}, idempotency_key="k-wrong")

    assert "wrong-secret-x" not in str(failure.value) and TOKEN not in str(failure.value)
    assert not ConnectorCall.objects.filter(idempotency_key="k-wrong").exists()
