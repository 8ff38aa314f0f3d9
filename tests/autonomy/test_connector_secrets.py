"""Connector secrets: encrypted at rest, never in the API, audit records, logs or errors."""

import json
import logging
from datetime import UTC, datetime

import pytest
import time_machine
from django.db import connection
from rest_framework.test import APIClient

from autonomy import actions, connectors
from autonomy.connectors import services, vault
from autonomy.models import AuditRecord, Connector, ConnectorKind, ConnectorSecret, Operation
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer

pytestmark = pytest.mark.django_db

SECRET = "s3cr3t-Zq7W-never-show-me"


def echo_headers(handler) -> dict:
    """A careless system that quotes the request's headers in its error body."""
    return {"error": "unauthorised", "you_sent": dict(handler.headers.items())}


@pytest.fixture
def crm(http_system):
    connector = Connector.objects.create(
        slug="crm", name="CRM", kind=ConnectorKind.HTTP,
        config={"base_url": http_system.url, "backoff_seconds": 0, "retries": 1,
                "auth": {"type": "header", "header": "X-Api-Key", "secret": "key"}},
    )  # fmt: skip
    services.connector_secret_set(connector=connector, name="key", value=SECRET, by=None)
    return connector


@pytest.fixture
def read_account(crm):
    return Operation.objects.create(
        connector=crm, slug="read-account", name="Read account",
        config={"method": "GET", "path": "/accounts/{account_id}"},
    )  # fmt: skip


def everything_in_the_audit_trail() -> str:
    return json.dumps(list(AuditRecord.objects.values("kind", "actor", "payload")), default=str)


def test_a_secret_is_stored_encrypted_and_read_back_only_by_the_vault(crm):
    with connection.cursor() as cursor:
        cursor.execute("SELECT ciphertext FROM autonomy_connectorsecret")
        [(raw,)] = cursor.fetchall()
    assert SECRET not in raw and raw.startswith("gAAAA")  # a Fernet token
    assert vault.secret_value(crm, "key") == SECRET


def test_replacing_a_secret_keeps_one_row_with_the_new_value(crm):
    services.connector_secret_set(connector=crm, name="key", value="second-value-123", by=None)
    assert ConnectorSecret.objects.filter(connector=crm).count() == 1
    assert vault.secret_value(crm, "key") == "second-value-123"


def test_setting_a_secret_is_audited_by_name_never_by_value(crm, it_admin):
    services.connector_secret_set(connector=crm, name="key", value=SECRET + "-2", by=it_admin)
    record = AuditRecord.objects.filter(kind="connector_secret_set").last()  # in trail order
    assert record.payload == {"connector": "crm", "name": "key", "created": False}
    assert record.actor == it_admin.username
    assert SECRET not in everything_in_the_audit_trail()


def test_the_admin_stores_a_secret_write_only_and_never_shows_it(client, it_admin, crm):
    client.force_login(it_admin)
    page = f"/admin/autonomy/connector/{crm.pk}/change/"
    form = {
        "slug": "crm", "name": "CRM", "kind": "http", "description": "", "enabled": "on",
        "config": json.dumps(crm.config), "secret_name": "other", "secret_value": "admin-typed-SECRET-1",
        "operations-TOTAL_FORMS": "0", "operations-INITIAL_FORMS": "0",
        "operations-MIN_NUM_FORMS": "0", "operations-MAX_NUM_FORMS": "1000",
    }  # fmt: skip
    response = client.post(page, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    assert vault.secret_value(crm, "other") == "admin-typed-SECRET-1"
    shown = client.get(page).content.decode()
    assert "other (set" in shown and "key (set" in shown
    assert "admin-typed-SECRET-1" not in shown and SECRET not in shown
    assert "admin-typed-SECRET-1" not in everything_in_the_audit_trail()


def test_an_error_message_quoting_the_secret_is_scrubbed(read_account, http_system):
    http_system.script.append((401, lambda handler: {"bad key": handler.headers["X-Api-Key"]}))
    with pytest.raises(connectors.ConnectorError) as caught:
        connectors.call(operation=read_account, params={"account_id": "A1"}, idempotency_key="k1")
    assert "401" in str(caught.value) and SECRET not in str(caught.value)
    assert '{"bad key": "[secret]"}' in str(caught.value)


def test_a_secret_at_the_edge_of_the_excerpt_leaks_not_even_a_prefix(read_account, http_system):
    http_system.script.append((400, lambda handler: "x" * 180 + handler.headers["X-Api-Key"]))
    with pytest.raises(connectors.ConnectorError) as caught:
        connectors.call(operation=read_account, params={"account_id": "A1"}, idempotency_key="k1")
    assert SECRET[:6] not in str(caught.value)


def test_no_log_line_carries_the_secret_during_calls(read_account, http_system, caplog):
    http_system.script += [(503, echo_headers), (200, {"id": "A1"}), (403, echo_headers)]
    with caplog.at_level(logging.DEBUG):
        connectors.call(operation=read_account, params={"account_id": "A1"}, idempotency_key="k2")
        with pytest.raises(connectors.ConnectorError):
            connectors.call(
                operation=read_account, params={"account_id": "A2"}, idempotency_key="k3"
            )
    assert len(http_system.received()) == 3
    assert caplog.records, (
        "the calls logged nothing at all: the assertion below would prove nothing"
    )
    assert all(SECRET not in r.getMessage() for r in caplog.records)
    assert SECRET not in caplog.text


def test_a_secret_missing_or_undecryptable_is_a_clear_error_without_a_value(read_account, settings):
    settings.AUTONOMY_SECRETS_KEY = ["a-different-key-altogether"]
    with pytest.raises(connectors.ConnectorError, match="cannot be decrypted"):
        connectors.call(operation=read_account, params={"account_id": "A1"}, idempotency_key="k4")
    ConnectorSecret.objects.all().delete()
    with pytest.raises(connectors.ConnectorError, match="has no secret named 'key'"):
        connectors.call(operation=read_account, params={"account_id": "A1"}, idempotency_key="k5")


def test_after_a_key_rotation_old_secrets_decrypt_and_are_reencrypted_under_the_new_key(
    crm, settings
):
    old = list(settings.AUTONOMY_SECRETS_KEY)
    settings.AUTONOMY_SECRETS_KEY = ["the-new-key-0123456789", *old]
    assert vault.secret_value(crm, "key") == SECRET
    assert vault.reencrypt_all() == 1
    settings.AUTONOMY_SECRETS_KEY = ["the-new-key-0123456789"]
    assert vault.secret_value(crm, "key") == SECRET


@pytest.fixture
def office_hours():
    with time_machine.travel(datetime(2026, 11, 25, 10, 0, tzinfo=UTC), tick=True):
        yield


def test_the_api_never_shows_a_secret_even_when_the_system_echoed_it(http_system, office_hours):
    registry = build_registry()
    erp = registry.erp
    erp.config = {"base_url": http_system.url, "retries": 0,
                  "auth": {"type": "bearer", "secret": "api-token"}}  # fmt: skip
    erp.save()
    services.connector_secret_set(connector=erp, name="api-token", value=SECRET, by=None)
    http_system.script.append((401, echo_headers))
    agent = bearer(APIClient(), registry.token)
    created = agent.post(
        "/api/v1/actions/",
        {"operation": "erp.post-invoice", "params": {"invoice_id": "INV-1", "amount": 5}},
        format="json",
    ).json()
    actions.action_execute(action_id=created["id"])
    shown = agent.get(f"/api/v1/actions/{created['id']}/")
    listed = agent.get("/api/v1/actions/")
    assert shown.json()["status"] == "failed" and "401" in json.dumps(shown.json())
    for response in (shown, listed):
        assert response.status_code == 200 and SECRET not in response.content.decode()
    assert SECRET not in everything_in_the_audit_trail()
