"""The demo ERP, CRM and ITSM: OpenAPI documents the connector import reads, records really
stored by actions through the gate, Idempotency-Key honoured, state kept across restarts,
and the demo seed wired to them only when their URL is configured."""

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import requests
import time_machine

from agents.models import Agent, AgentStatus
from autonomy import actions
from autonomy.connectors import openapi, vault
from autonomy.connectors.services import connector_import_openapi
from autonomy.models import ActionRequest, ActionStatus, Connector, Operation
from demo import connectors as demo_connectors
from demo import registry as demo_registry
from demo.systems.server import make_server
from demo.systems.systems import openapi_document
from tests.realparts import ROOT, free_port

pytestmark = pytest.mark.django_db

AUTH = {"Authorization": "Bearer demo-tok"}


@pytest.fixture
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


@pytest.fixture
def wired(demo_systems, settings, monkeypatch):
    """The demo registry seeded against the running demo systems."""
    settings.AUTONOMY_DEMO_SYSTEMS_URL = demo_systems.url
    monkeypatch.setenv("AUTONOMY_DEMO_SYSTEMS_TOKEN", "demo-tok")
    demo_registry.seed(agents=30)
    demo_connectors.seed()
    return demo_systems


def executed(role: str, operation: str, params: dict) -> ActionRequest:
    agent = Agent.objects.filter(role__slug=role, status=AgentStatus.ACTIVE).order_by("slug")[0]
    action, _ = actions.action_request(
        agent=agent, operation_key=operation, params=params, reason="test"
    )
    assert action.status == ActionStatus.APPROVED, (action.decision, action.reasons)
    actions.action_execute(action_id=action.pk)
    action.refresh_from_db()
    assert action.status == ActionStatus.SUCCEEDED, action.error
    return action


def test_each_demo_system_serves_an_openapi_document_that_the_connector_import_reads(
    demo_systems,
):
    for system, kind in (("erp", "erp"), ("crm", "crm"), ("itsm", "itsm")):
        connector = Connector.objects.create(slug=f"{system}-import", name=system, kind=kind)
        document = requests.get(f"{demo_systems.url}/{system}/openapi.json", timeout=5).text
        imported = connector_import_openapi(connector=connector, document=document, by=None)
        seeded = {slug for conn, slug, *_ in demo_connectors.OPERATIONS if conn == system}
        assert seeded <= {op.slug for op in imported}, system


def test_the_demo_seed_gives_each_demo_operation_its_method_and_path_offline():
    demo_registry.seed(agents=20)
    demo_connectors.seed()
    post = Operation.objects.get(connector__slug="erp", slug="post-invoice")
    assert post.config == {"method": "POST", "path": "/invoices/{invoice_id}/post"}
    match = Operation.objects.get(connector__slug="erp", slug="match-purchase-order")
    assert match.config == {"method": "GET", "path": "/invoices/{invoice_id}/match"}
    for system in demo_connectors.DEMO_SYSTEMS:
        assert "base_url" not in Connector.objects.get(slug=system).config  # the ledger answers


def test_seeding_with_the_systems_url_points_the_demo_connectors_at_them_with_a_secret_token(
    wired,
):
    erp = Connector.objects.get(slug="erp")
    assert erp.config["base_url"] == f"{wired.url}/erp"
    assert erp.config["auth"] == {"type": "bearer", "secret": "token"}
    assert vault.secret_value(erp, "token") == "demo-tok"
    assert "demo-tok" not in str(erp.config)
    demo_connectors.seed()  # again: nothing changes
    assert Connector.objects.get(slug="erp").config == erp.config


def test_an_invoice_posted_through_the_gate_is_stored_in_the_demo_erp(wired, office_hours):
    action = executed("invoice-processor", "erp.post-invoice",
                      {"invoice_id": "INV-T1", "amount": 420, "currency": "EUR"})  # fmt: skip
    stored = wired.app.store.get("erp", "invoice", "INV-T1")
    assert stored["status"] == "posted" and stored["amount"] == 420
    assert action.outcome["data"]["status"] == "posted"


def test_a_purchase_order_created_through_the_gate_is_stored_in_the_demo_erp(wired, office_hours):
    action = executed("po-buyer", "erp.create-purchase-order", {"supplier": "Acme", "amount": 900})
    po_number = action.outcome["data"]["po_number"]
    assert wired.app.store.get("erp", "purchase_order", po_number)["supplier"] == "Acme"


def test_an_incident_opened_through_the_gate_is_stored_in_the_demo_itsm(wired, office_hours):
    action = executed("incident-triager", "itsm.create-incident", {"title": "VPN down"})
    incident_id = action.outcome["data"]["incident_id"]
    assert wired.app.store.get("itsm", "incident", incident_id)["title"] == "VPN down"


def test_a_repeated_execution_of_one_action_makes_one_incident(wired, office_hours):
    action = executed("incident-triager", "itsm.create-incident", {"title": "Disk full"})
    ActionRequest.objects.filter(pk=action.pk).update(status=ActionStatus.APPROVED)
    actions.action_execute(action_id=action.pk)  # a redelivered task
    assert wired.app.store.count("itsm", "incident") == 1


def test_the_same_idempotency_key_gets_the_same_answer_and_no_second_record(demo_systems):
    url = f"{demo_systems.url}/itsm/incidents"
    headers = {**AUTH, "Idempotency-Key": "key-1"}
    first = requests.post(url, json={"title": "Printer jam"}, headers=headers, timeout=5)
    again = requests.post(url, json={"title": "Printer jam"}, headers=headers, timeout=5)
    other = requests.post(url, json={"title": "Another"}, headers=headers, timeout=5)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert other.status_code == 409
    assert demo_systems.app.store.count("itsm", "incident") == 1


def test_a_call_without_the_demo_token_is_refused(demo_systems):
    response = requests.get(f"{demo_systems.url}/crm/accounts/ACC-1", timeout=5)
    assert response.status_code == 401
    assert demo_systems.app.store.count("crm", "account") == 0


def test_records_survive_a_restart_of_the_demo_systems(demo_systems):
    created = requests.post(f"{demo_systems.url}/erp/purchase-orders", headers=AUTH, timeout=5,
                            json={"supplier": "Globex", "amount": 10}).json()  # fmt: skip
    restarted = make_server(port=0, database=demo_systems.app.store.path, token="demo-tok")
    assert restarted.app.store.get("erp", "purchase_order", created["po_number"]) == created
    restarted.server_close()


def test_python_m_demo_systems_prints_one_ready_line_and_stops_on_sigterm(tmp_path):
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "demo.systems", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "AUTONOMY_DATA_DIR": str(tmp_path)},
    )  # fmt: skip
    try:
        line = process.stdout.readline()
        assert f"ready on http://127.0.0.1:{port}" in line
        assert requests.get(f"http://127.0.0.1:{port}/erp/openapi.json", timeout=5).ok
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert (tmp_path / "demo-systems.sqlite3").exists()
    finally:
        process.kill()
        process.wait()


def test_every_demo_document_is_a_valid_openapi_3_document():
    for system in demo_connectors.DEMO_SYSTEMS:
        document = openapi.load(openapi_document(system))
        slugs = [spec["slug"] for spec in openapi.operation_specs(document)]
        assert len(slugs) == len(set(slugs)) and slugs, system


def test_import_demo_systems_adds_their_extra_operations_and_keeps_the_seeded_ones(
    demo_systems, capsys
):
    from django.core.management import call_command

    demo_registry.seed(agents=20)
    demo_connectors.seed()
    call_command("import_demo_systems", "--url", demo_systems.url)
    assert "itsm: 6 operations" in capsys.readouterr().out
    read_incident = Operation.objects.get(connector__slug="itsm", slug="read-incident")
    assert read_incident.config == {"method": "GET", "path": "/incidents/{incident_id}"}
    post = Operation.objects.get(connector__slug="erp", slug="post-invoice")
    assert post.sensitivity == 2 and post.financial and post.amount_param == "amount"
