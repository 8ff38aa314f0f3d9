"""A task is handed off only to an agent eligible for its step: of the step's role, of the
run's business unit, granted the step's operation. Anybody else would read the run's
context and messages."""

from rest_framework.test import APIClient

from agents import services as agent_services
from autonomy import grants
from tests.conftest import bearer
from tests.factories import BusinessUnitFactory
from tests.workflows.fixtures import published, step
from workflows.models import StepRun, StepStatus


def client_for(agent) -> APIClient:
    _, token = agent_services.credential_issue(agent=agent)
    return bearer(APIClient(), token)


def hand(api, task_id, to_slug):
    return api.post(
        f"/api/v1/tasks/{task_id}/handoff/", {"agent": to_slug, "reason": "busy"}, format="json"
    )


def take_task(world, steps, *, key="scoped"):
    clerk = world.agents[0]
    api = client_for(clerk)
    started = api.post(
        "/api/v1/runs/",
        {"template": published(key, steps).key, "context": {"salary": 1}},
        format="json",
    )
    assert started.status_code == 201, started.content
    task = api.get("/api/v1/tasks/next/")
    assert task.status_code == 200 and task.json()["assignee"] == clerk.slug
    return api, task.json()["id"]


def assert_refused(response, task_id, unmet, outsider):
    assert response.status_code == 403, response.content
    error = response.json()["error"]
    assert error["code"] == "handoff_target_ineligible"
    assert error["details"]["unmet"] == unmet
    task = StepRun.objects.get(pk=task_id)
    assert task.status == StepStatus.RUNNING and task.assignee.slug == "clerk-0"
    peek = client_for(outsider).get(f"/api/v1/tasks/{task_id}/context/")
    assert peek.json()["error"]["code"] == "task_not_yours"


def test_a_task_is_not_handed_to_an_agent_of_another_role(world):
    api, task_id = take_task(world, [step("gather", None, visible_context=["salary"])])
    senior = world.seniors_agents[0]
    assert_refused(hand(api, task_id, senior.slug), task_id, ["role"], senior)


def test_a_task_is_not_handed_across_business_units(world):
    api, task_id = take_task(world, [step("gather", None, visible_context=["salary"])])
    it_clerk = agent_services.agent_register(
        approved=True, name="IT clerk", slug="it-clerk", owner=world.officer, role=world.clerks,
        business_unit=BusinessUnitFactory(slug="it", name="IT"),
    )  # fmt: skip
    assert_refused(hand(api, task_id, it_clerk.slug), task_id, ["business_unit"], it_clerk)


def test_a_task_is_not_handed_to_an_agent_without_the_steps_grant(world):
    clerk, other = world.agents
    grants.grant(target=world.ops["senior-only"], to=clerk)  # the agent's own, not the role's
    api, task_id = take_task(world, [step("pay", "senior-only", kind="task")])
    assert_refused(hand(api, task_id, other.slug), task_id, ["grant"], other)


def test_a_task_is_handed_to_an_eligible_agent(world):
    api, task_id = take_task(world, [step("gather", None, visible_context=["salary"])])
    other = world.agents[1]
    handed = hand(api, task_id, other.slug)
    assert handed.status_code == 200 and handed.json()["assignee"] == other.slug
    assert client_for(other).get("/api/v1/tasks/next/").json()["id"] == task_id


def test_an_escalated_task_may_be_handed_within_its_escalation_role(world):
    clerk = world.agents[0]
    senior, second = world.seniors_agents[0], agent_services.agent_register(
        approved=True, name="Senior 2", slug="senior-2", owner=world.officer,
        business_unit=clerk.business_unit, role=world.seniors,
    )  # fmt: skip
    api, task_id = take_task(world, [step("gather", None, escalate_to_role="wf-senior")])
    escalated = api.post(f"/api/v1/tasks/{task_id}/escalate/", {"reason": "odd"}, format="json")
    assert escalated.status_code == 200, escalated.content
    holder = escalated.json()["assignee"]
    theirs = client_for(senior if holder == senior.slug else second)
    assert theirs.get("/api/v1/tasks/next/").json()["id"] == task_id
    to = second if holder == senior.slug else senior
    handed = hand(theirs, task_id, to.slug)
    assert handed.status_code == 200, handed.content
