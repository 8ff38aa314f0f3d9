"""Simulate is no oracle: an agent asking about an operation it is not granted gets exactly
the answer a name that does not exist gets; a person who may read policies sees it all."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from autonomy.models import DataClass, Effect, Operation
from autonomy.policy import services as policy_services
from tests.conftest import bearer

SIMULATE = "/api/v1/simulate/"
SECRET_POLICY = "payroll-ceiling"
PAYROLL_SCHEMA = {
    "type": "object",
    "properties": {"payroll_batch": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["payroll_batch", "amount"],
    "additionalProperties": False,
}

pytestmark = pytest.mark.django_db


@pytest.fixture
def payroll(registry):
    """An operation the agent's role is not granted, with a schema and a policy naming it."""
    operation = Operation.objects.create(
        connector=registry.erp, slug="pay-salaries", name="Pay salaries", effect=Effect.WRITE,
        sensitivity=4, data_class=DataClass.RESTRICTED, financial=True,
        params_schema=PAYROLL_SCHEMA,
        amount_param="amount",
    )  # fmt: skip
    policy_services.registry_changed()
    policy_services.policy_save(
        name=SECRET_POLICY,
        text='forbid (principal, action, resource == Operation::"erp.pay-salaries") '
        "when { context has amount && context.amount > 50000 };",
        enabled=True,
        by=registry.officer,
    )
    return operation


def ask(client: APIClient, operation: str, params: dict):
    response = client.post(SIMULATE, {"operation": operation, "params": params}, format="json")
    body = response.json()
    return response.status_code, body


@pytest.mark.parametrize(
    "params", [{}, {"payroll_batch": "2026-11", "amount": 90000}, {"amount": "lots"}]
)
def test_an_ungranted_operation_answers_exactly_as_an_unknown_one(registry, payroll, params):
    agent = bearer(APIClient(), registry.token)
    status, ungranted = ask(agent, "erp.pay-salaries", params)
    unknown_status, unknown = ask(agent, "erp.no-such-thing", params)

    assert (status, unknown_status) == (400, 400)
    assert ungranted["error"]["code"] == "operation_unknown"
    as_unknown = str(ungranted).replace("erp.pay-salaries", "erp.no-such-thing")
    assert as_unknown == str(unknown)
    for secret in (SECRET_POLICY, "payroll_batch", "risk", "restricted"):
        assert secret not in str(ungranted)


def test_a_granted_operation_still_gets_the_gates_answer(registry, payroll):
    status, body = ask(
        bearer(APIClient(), registry.token),
        "erp.post-invoice",
        {"invoice_id": "INV-1", "amount": 10},
    )
    assert status == 200 and body["verdict"] == "allow"


def test_a_person_who_reads_policies_sees_why_the_agent_would_be_refused(
    registry, payroll, it_admin
):
    it_admin.user_permissions.add(Permission.objects.get(codename="view_policy"))
    person = APIClient()
    person.force_authenticate(it_admin)
    response = person.post(
        SIMULATE,
        {"agent": registry.agent.slug, "operation": "erp.pay-salaries",
         "params": {"payroll_batch": "2026-11", "amount": 90000}},
        format="json",
    )  # fmt: skip
    assert response.status_code == 200, response.content
    assert response.json()["verdict"] == "deny"
    assert "grant_missing" in {r["code"] for r in response.json()["reasons"]}


@pytest.mark.parametrize("params", [{}, {"payroll_batch": 7, "amount": "lots"}])
def test_an_action_on_an_ungranted_operation_shows_no_schema_either(registry, payroll, params):
    """POST /api/v1/actions/ with parameters the schema refuses: for an ungranted operation
    the answer is the unknown operation's, not the schema's errors."""
    client = bearer(APIClient(), registry.token)
    asked = client.post(
        "/api/v1/actions/", {"operation": "erp.pay-salaries", "params": params}, format="json"
    )
    unknown = client.post(
        "/api/v1/actions/", {"operation": "erp.no-such-thing", "params": params}, format="json"
    )
    assert asked.status_code == unknown.status_code == 400
    assert asked.json()["error"]["code"] == unknown.json()["error"]["code"] == "operation_unknown"
    assert "errors" not in asked.json()["error"]["details"]


def test_a_granted_operations_bad_parameters_are_still_named(registry):
    client = bearer(APIClient(), registry.token)
    refused = client.post(
        "/api/v1/actions/", {"operation": "erp.post-invoice", "params": {}}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "params_invalid"
    assert refused.json()["error"]["details"]["errors"]
