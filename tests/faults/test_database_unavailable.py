"""An API request that fails on the database (its COMMIT killed, its connection dropped)
answers 503 with the error envelope and Retry-After: the caller may send it again."""

import pytest
from django.db import OperationalError, connection
from rest_framework.test import APIClient

from autonomy.models import ActionRequest
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import bearer

BODY = {"operation": "erp.post-invoice", "params": {"invoice_id": "INV-1", "amount": 10}}


def killed_on_insert(execute, sql, params, many, context):
    if sql.lstrip().upper().startswith("INSERT"):
        raise OperationalError("terminating connection due to administrator command")
    return execute(sql, params, many, context)


@pytest.mark.django_db(transaction=True)
def test_an_api_write_whose_database_goes_away_answers_503_with_the_envelope():
    registry = build_registry()
    api = bearer(APIClient(), registry.token)
    with connection.execute_wrapper(killed_on_insert):
        response = api.post("/api/v1/actions/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "2"
    assert response.json() == {
        "error": {
            "code": "database_unavailable",
            "message": response.json()["error"]["message"],
            "details": {},
        }
    }
    assert not ActionRequest.objects.exists()
    # Sent again once the database is back: accepted, once.
    again = api.post("/api/v1/actions/", BODY, format="json", HTTP_IDEMPOTENCY_KEY="k-1")
    assert again.status_code == 201, again.content
    assert ActionRequest.objects.count() == 1


class DatabaseAwayMiddleware:
    """A middleware whose own read fails, as the session's or auditlog's does when the
    database goes away before the view runs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        raise OperationalError("could not connect to server: Connection refused")


def test_a_database_error_outside_the_view_answers_503_too(settings):
    """Raised before any API view, the error reaches Django's handler500, not DRF's."""
    from django.test import Client

    settings.MIDDLEWARE = [
        *settings.MIDDLEWARE,
        "tests.faults.test_database_unavailable.DatabaseAwayMiddleware",
    ]
    response = Client(raise_request_exception=False).get("/api/v1/agents/me/")
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == "2"
    assert response.json()["error"]["code"] == "database_unavailable"
    page = Client(raise_request_exception=False).get("/admin/login/")
    assert page.status_code == 500  # a page, not the API: Django's own error page
