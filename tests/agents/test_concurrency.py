"""Two officers acting on one agent at once, on real PostgreSQL row locks."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from agents import services
from agents.models import Agent, AgentStatus, Credential
from autonomy.errors import IllegalTransition
from tests.factories import make_agent

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_retire_requests_retire_once(postgres, it_admin):
    agent = make_agent(slug="contested")
    for _ in range(3):
        services.credential_issue(agent=agent)

    def retire(_):
        try:
            services.agent_retire(agent=agent, by=it_admin, reason="race")
            return "retired"
        except IllegalTransition:
            return "refused"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(retire, range(16)))
    assert outcomes.count("retired") == 1
    assert outcomes.count("refused") == 15
    assert Agent.objects.get(pk=agent.pk).status == AgentStatus.RETIRED
    assert Credential.objects.filter(agent=agent, revoked_at=None).count() == 0


def test_concurrent_rotations_of_one_credential_issue_one_successor(postgres):
    agent = make_agent(slug="rotating")
    credential, _ = services.credential_issue(agent=agent)

    def rotate(_):
        try:
            services.credential_rotate(credential=credential)
            return "rotated"
        except services.DomainError:
            return "refused"
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=8) as pool:
        outcomes = list(pool.map(rotate, range(12)))
    assert outcomes.count("rotated") == 1
    assert Credential.objects.filter(rotated_from=credential).count() == 1
