"""The OpenAPI schema and the docs page are for signed-in people and authenticated API
clients only, and the docs page loads nothing from a CDN."""

import re

import pytest
from django.test import Client
from rest_framework.test import APIClient

from agents import services
from tests.conftest import bearer
from tests.factories import UserFactory, make_agent

SCHEMA = "/api/schema/"
DOCS = "/api/docs/"


@pytest.mark.django_db
@pytest.mark.parametrize("path", [SCHEMA, DOCS, f"{DOCS}?script="])
def test_anonymous_callers_can_read_neither_the_schema_nor_the_docs(path):
    response = APIClient().get(path)
    assert response.status_code == 401
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"]["code"] == "not_authenticated"


@pytest.mark.django_db
def test_an_authenticated_api_client_reads_the_schema():
    _, token = services.credential_issue(agent=make_agent(slug="schema-reader"))
    response = bearer(APIClient(), token).get(
        SCHEMA, HTTP_ACCEPT="application/vnd.oai.openapi+json"
    )
    assert response.status_code == 200
    assert "/api/v1/actions/" in response.json()["paths"]


@pytest.mark.django_db
def test_the_docs_page_serves_swagger_from_this_server_with_no_inline_script():
    client = Client()
    client.force_login(UserFactory(username="docs-reader", is_staff=True))
    page = client.get(DOCS)
    assert page.status_code == 200
    html = page.content.decode()
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', html)
    assert sources and all(src.startswith("/") for src in sources), sources
    assert any("drf_spectacular_sidecar/swagger-ui-dist/" in src for src in sources)
    assert "@latest" not in html and "cdn" not in html.lower()
    assert "<script>" not in html and "<style>" not in html
    for src in sources:
        assert client.get(src).status_code == 200, src
    assert client.get(SCHEMA).status_code == 200  # what the page's script fetches
