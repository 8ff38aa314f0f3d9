"""The HTTP/REST connector against a real local HTTP server: OpenAPI import, the request it
sends, retries, receipts, errors, and one action end to end through the gate."""

import copy
import json
from datetime import UTC, datetime

import pytest
import time_machine

from autonomy import actions, connectors
from autonomy.connectors import services
from autonomy.models import (
    ActionRequest,
    ActionStatus,
    Connector,
    ConnectorCall,
    ConnectorKind,
    Effect,
    Operation,
)
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer
from tests.realparts import free_port

pytestmark = pytest.mark.django_db

TOKEN = "tok-9f8e7d6c5b4a-very-secret"

DOCUMENT = {
    "openapi": "3.0.3",
    "info": {"title": "ERP", "version": "1"},
    "paths": {
        "/invoices/{invoice_id}": {
            "parameters": [
                {"name": "invoice_id", "in": "path", "required": True, "schema": {"type": "string"}}
            ],
            "get": {
                "operationId": "getInvoice",
                "summary": "Read an invoice",
                "parameters": [{"name": "expand", "in": "query", "schema": {"type": "boolean"}}],
                "responses": {"200": {"description": "ok"}},
            },
            "delete": {"operationId": "deleteInvoice", "summary": "Delete an invoice",
                       "responses": {"204": {"description": "gone"}}},
        },
        "/invoices": {
            "post": {
                "operationId": "postInvoice",
                "summary": "Post an invoice",
                "parameters": [{"name": "dry_run", "in": "query", "schema": {"type": "boolean"}}],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Invoice"}}},
                },
                "responses": {"201": {"description": "posted"}},
            }
        },
    },
    "components": {
        "schemas": {
            "Invoice": {
                "type": "object",
                "required": ["invoice_id", "amount"],
                "properties": {
                    "invoice_id": {"type": "string"},
                    "amount": {"type": "number", "minimum": 0},
                    "memo": {"type": "string", "nullable": True},
                    "lines": {"type": "array", "items": {"$ref": "#/components/schemas/Line"}},
                },
            },
            "Line": {"type": "object", "properties": {"sku": {"type": "string"}, "qty": {"type": "integer"}}},
        }
    },
}  # fmt: skip


def http_connector(url: str, **config) -> Connector:
    connector = Connector.objects.create(
        slug="erp-http",
        name="ERP",
        kind=ConnectorKind.ERP,
        config={
            "base_url": url,
            "timeout_seconds": 5,
            "retries": 2,
            "backoff_seconds": 0,
            "auth": {"type": "bearer", "secret": "api-token"},
            **config,
        },
    )
    services.connector_secret_set(connector=connector, name="api-token", value=TOKEN, by=None)
    return connector


@pytest.fixture
def erp(http_system):
    connector = http_connector(http_system.url)
    services.connector_import_openapi(connector=connector, document=DOCUMENT, by=None)
    return connector


def op(connector: Connector, slug: str) -> Operation:
    return Operation.objects.select_related("connector").get(connector=connector, slug=slug)


def test_openapi_import_creates_one_operation_per_path_and_method(erp):
    ops = {o.slug: o for o in Operation.objects.filter(connector=erp)}
    assert set(ops) == {"get-invoice", "delete-invoice", "post-invoice"}
    assert ops["get-invoice"].name == "Read an invoice" and ops["get-invoice"].effect == Effect.READ
    assert ops["post-invoice"].effect == Effect.WRITE
    assert ops["delete-invoice"].effect == Effect.DELETE
    assert ops["post-invoice"].config == {
        "method": "POST",
        "path": "/invoices",
        "query": ["dry_run"],
    }
    assert ops["get-invoice"].config == {"method": "GET", "path": "/invoices/{invoice_id}"}


def test_openapi_import_builds_the_parameter_schema_with_refs_resolved(erp):
    schema = op(erp, "post-invoice").params_schema
    assert schema["required"] == ["invoice_id", "amount"]
    assert schema["additionalProperties"] is False
    assert schema["properties"]["amount"] == {"type": "number", "minimum": 0}
    assert schema["properties"]["lines"]["items"]["properties"]["qty"] == {"type": "integer"}
    assert schema["properties"]["memo"] == {"type": ["string", "null"]}
    assert "$ref" not in json.dumps(schema)
    assert op(erp, "get-invoice").params_schema["required"] == ["invoice_id"]


def test_reimporting_updates_operations_and_keeps_what_people_set(erp):
    post = op(erp, "post-invoice")
    post.sensitivity, post.financial = 4, True
    post.save()
    changed = copy.deepcopy(DOCUMENT)
    changed["paths"]["/invoices"]["post"]["summary"] = "Post a supplier invoice"
    imported = services.connector_import_openapi(
        connector=erp, document=json.dumps(changed), by=None
    )
    assert len(imported) == 3 and Operation.objects.filter(connector=erp).count() == 3
    post.refresh_from_db()
    assert post.name == "Post a supplier invoice"
    assert (post.sensitivity, post.financial) == (4, True)


def test_a_call_sends_method_path_body_idempotency_key_and_token(erp, http_system):
    http_system.script.append((201, {"id": "INV-7", "state": "posted"}))
    params = {"invoice_id": "INV-7", "amount": 42.5, "dry_run": False}
    result = connectors.call(
        operation=op(erp, "post-invoice"), params=params, idempotency_key="act-1"
    )
    assert result == {"status": 201, "data": {"id": "INV-7", "state": "posted"}, "replayed": False}
    [request] = http_system.received()
    assert request["method"] == "POST" and request["path"] == "/invoices?dry_run=false"
    assert request["body"] == {"invoice_id": "INV-7", "amount": 42.5}
    assert request["headers"]["Idempotency-Key"] == "act-1"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"


def test_path_parameters_are_url_quoted_and_a_read_sends_the_rest_as_query(erp, http_system):
    params = {"invoice_id": "A/B ?#1", "expand": True}
    connectors.call(operation=op(erp, "get-invoice"), params=params, idempotency_key="act-2")
    [request] = http_system.received()
    assert request["method"] == "GET"
    assert request["path"] == "/invoices/A%2FB%20%3F%231?expand=true"
    assert request["body"] is None


def test_a_503_is_retried_and_the_following_200_answers(erp, http_system):
    http_system.script += [(503, {"error": "busy"}), (200, {"id": "INV-8"})]
    result = connectors.call(
        operation=op(erp, "get-invoice"), params={"invoice_id": "INV-8"}, idempotency_key="act-3"
    )
    assert result["data"] == {"id": "INV-8"}
    requests = http_system.received()
    assert len(requests) == 2
    assert {r["headers"]["Idempotency-Key"] for r in requests} == {"act-3"}


def test_a_404_is_not_retried_and_fails_with_status_and_excerpt_without_the_token(erp, http_system):
    http_system.script.append((404, {"error": "no invoice INV-404"}))
    with pytest.raises(connectors.ConnectorError) as caught:
        connectors.call(
            operation=op(erp, "get-invoice"),
            params={"invoice_id": "INV-404"},
            idempotency_key="act-4",
        )
    message = str(caught.value)
    assert "404" in message and "no invoice INV-404" in message and "/invoices/INV-404" in message
    assert caught.value.status == 404
    assert TOKEN not in message and "Bearer" not in message
    assert len(http_system.received()) == 1


def test_a_redelivered_call_is_answered_from_the_receipt_without_a_second_request(erp, http_system):
    post, params = op(erp, "post-invoice"), {"invoice_id": "INV-9", "amount": 9}
    first = connectors.call(operation=post, params=params, idempotency_key="act-5")
    again = connectors.call(operation=post, params=params, idempotency_key="act-5")
    assert len(http_system.received()) == 1
    assert again == {**first, "replayed": True}
    assert ConnectorCall.objects.get(idempotency_key="act-5").result["data"] == {"ok": True}


def test_a_failed_call_leaves_no_receipt_so_a_redelivery_calls_again(erp, http_system):
    http_system.script += [(500, {}), (500, {}), (500, {})]
    post, params = op(erp, "post-invoice"), {"invoice_id": "INV-10", "amount": 1}
    with pytest.raises(connectors.ConnectorError, match="500"):
        connectors.call(operation=post, params=params, idempotency_key="act-6")
    assert connectors.call(operation=post, params=params, idempotency_key="act-6")["status"] == 200
    assert len(http_system.received()) == 4


def test_an_unreachable_system_fails_after_its_retries_with_a_clear_error():
    connector = http_connector(f"http://127.0.0.1:{free_port()}")
    services.connector_import_openapi(connector=connector, document=DOCUMENT, by=None)
    with pytest.raises(connectors.ConnectorError, match="could not be reached after 3 attempts"):
        connectors.call(
            operation=op(connector, "get-invoice"),
            params={"invoice_id": "1"},
            idempotency_key="act-7",
        )


def test_an_answer_outside_the_result_schema_fails_the_call(erp, http_system):
    get = op(erp, "get-invoice")
    get.config = {**get.config, "result_schema": {"type": "object", "required": ["amount"]}}
    get.save()
    http_system.script.append((200, {"id": "INV-11"}))
    with pytest.raises(connectors.ConnectorError, match="outside its result schema"):
        connectors.call(operation=get, params={"invoice_id": "INV-11"}, idempotency_key="act-8")


def test_an_erp_connector_without_a_base_url_is_still_the_ledger():
    ledger = Connector.objects.create(slug="erp-demo", name="ERP demo", kind=ConnectorKind.ERP)
    read = Operation.objects.create(connector=ledger, slug="read", name="Read")
    result = connectors.call(operation=read, params={"a": 1}, idempotency_key="act-9")
    assert result["accepted"] == {"a": 1} and result["replayed"] is False


def test_an_it_admin_imports_operations_from_a_url_in_the_admin(client, it_admin, http_system):
    connector = http_connector(http_system.url)
    http_system.routes["/openapi.json"] = (200, DOCUMENT)
    client.force_login(it_admin)
    page = f"/admin/autonomy/connector/{connector.pk}/import-openapi/"
    assert client.get(page).status_code == 200
    response = client.post(page, {"url": f"{http_system.url}/openapi.json", "document": ""})
    assert response.status_code == 302, response.content.decode()[:2000]
    assert set(Operation.objects.filter(connector=connector).values_list("slug", flat=True)) == {
        "get-invoice", "delete-invoice", "post-invoice"
    }  # fmt: skip


@pytest.fixture
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


def test_an_allowed_action_through_the_api_reaches_the_http_system_once(http_system, office_hours):
    registry = build_registry()
    erp = registry.erp
    erp.config = {"base_url": http_system.url, "auth": {"type": "bearer", "secret": "api-token"},
                  "backoff_seconds": 0}  # fmt: skip
    erp.save()
    services.connector_secret_set(connector=erp, name="api-token", value=TOKEN, by=None)
    post = registry.post
    post.config = {"method": "POST", "path": "/invoices"}
    post.save()
    http_system.script.append((201, {"id": "INV-E2E", "state": "posted"}))

    from rest_framework.test import APIClient

    response = bearer(APIClient(), registry.token).post(
        "/api/v1/actions/",
        {"operation": "erp.post-invoice", "params": {"invoice_id": "INV-E2E", "amount": 120}},
        format="json",
    )
    assert response.status_code == 201 and response.json()["decision"] == "allow", response.content
    action_id = response.json()["id"]
    actions.action_execute(action_id=action_id)
    actions.action_execute(action_id=action_id)  # a redelivered task

    action = ActionRequest.objects.get(pk=action_id)
    assert action.status == ActionStatus.SUCCEEDED
    assert action.outcome["data"] == {"id": "INV-E2E", "state": "posted"}
    [request] = http_system.received()
    assert request["path"] == "/invoices" and request["headers"]["Idempotency-Key"] == action_id
    assert request["body"] == {"invoice_id": "INV-E2E", "amount": 120}
