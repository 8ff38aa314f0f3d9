"""Every page carries a Content-Security-Policy that allows no inline script or style and no
other origin, and the templates give it nothing inline to block."""

import re

import pytest
from django.test import Client

from tests.factories import UserFactory
from tests.realparts import ROOT

PAGES = [
    "/admin/login/",
    "/admin/",
    "/inbox/",
    "/activity/",
    "/dashboard/",
    "/rollouts/",
    "/api/docs/",
]
INLINE = [
    (re.compile(r"<script(?![^>]*\bsrc=)[^>]*>", re.I), "an inline <script>"),
    (re.compile(r"<style\b", re.I), "a <style> block"),
    (re.compile(r"\sstyle\s*=", re.I), "a style= attribute"),
    (re.compile(r"\son[a-z]+\s*=", re.I), "an inline event handler"),
    (re.compile(r"javascript:", re.I), "a javascript: URL"),
]


def directives(header: str) -> dict[str, list[str]]:
    parsed = {}
    for part in header.split(";"):
        name, *values = part.split()
        parsed[name] = values
    return parsed


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_pages_carry_a_policy_with_nothing_inline_and_no_other_origin(path):
    client = Client()
    client.force_login(UserFactory(username="csp", is_staff=True, is_superuser=True))
    if path == "/admin/login/":
        client = Client()
    response = client.get(path)
    assert response.status_code == 200, (path, response.status_code)
    policy = directives(response["Content-Security-Policy"])
    assert policy["default-src"] == ["'self'"]
    assert policy["script-src"] == ["'self'"]
    assert policy["style-src"] == ["'self'"]
    assert policy["object-src"] == ["'none'"]
    for values in policy.values():
        assert not {"'unsafe-inline'", "'unsafe-eval'", "*"} & set(values), policy
        assert not [v for v in values if v.startswith(("http:", "https:"))], policy


def test_the_templates_have_nothing_inline_for_the_policy_to_block():
    found = []
    for template in sorted((ROOT / "templates").rglob("*.html")):
        text = re.sub(
            r"{% comment %}.*?{% endcomment %}|{#.*?#}", "", template.read_text(), flags=re.S
        )
        for pattern, what in INLINE:
            for match in pattern.finditer(text):
                line = text.count("\n", 0, match.start()) + 1
                found.append(f"{template.relative_to(ROOT)}:{line}: {what}")
    assert not found, "\n".join(found)


@pytest.mark.django_db
def test_the_admin_pages_of_other_apps_that_we_use_have_nothing_inline_either():
    """django-auditlog's history page ships an inline <style>; ours is served from a file."""
    from django.urls import reverse

    from tests.factories import make_agent

    agent = make_agent(slug="history-bot")
    client = Client()
    client.force_login(UserFactory(username="auditor", is_staff=True, is_superuser=True))
    page = client.get(reverse("admin:agents_agent_auditlog", args=[agent.pk]))
    assert page.status_code == 200
    html = page.content.decode()
    for pattern, what in INLINE:
        assert not pattern.search(html), what
    assert "portal/auditlog.css" in html
