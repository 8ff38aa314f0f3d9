"""The agents' side of workflows over HTTP: pull, claim, read, complete, hand off, escalate."""

from rest_framework.test import APIClient

from agents import services as agent_services
from tests.conftest import bearer
from tests.workflows.fixtures import published, step
from workflows.models import Run, RunStatus, StepRun, StepStatus


def client_for(agent, scopes=None) -> APIClient:
    _, token = agent_services.credential_issue(agent=agent, scopes=scopes)
    return bearer(APIClient(), token)


def onboarding(world):
    return published(
        "onboarding",
        [step("gather", None, visible_context=["customer"], instructions="Collect the ID."),
         step("verify", None, after=["gather"], input_map={"docs": "$.gather.docs"},
              escalate_to_human=True)],
    )  # fmt: skip


def test_an_agent_pulls_claims_reads_and_completes_its_task(world):
    clerk, other = world.agents
    template = onboarding(world)
    api = client_for(clerk)
    started = api.post("/api/v1/runs/", {"template": template.key,
                                         "context": {"customer": {"id": 9}, "iban": "x"}},
                       format="json")  # fmt: skip
    assert started.status_code == 201, started.json()
    assert "context" not in started.json()  # the whole context is never shown to an agent
    task = api.get("/api/v1/tasks/next/")
    assert task.status_code == 200 and task.json()["step"] == "gather"
    assert task.json()["status"] == "running" and task.json()["assignee"] == clerk.slug
    assert client_for(other).get("/api/v1/tasks/next/").status_code == 204
    seen = api.get(f"/api/v1/tasks/{task.json()['id']}/context/").json()
    assert seen == {"input": {}, "context": {"customer": {"id": 9}}}
    done = api.post(f"/api/v1/tasks/{task.json()['id']}/complete/",
                    {"output": {"docs": ["id.pdf"]}}, format="json")  # fmt: skip
    assert done.status_code == 200 and done.json()["status"] == "succeeded"
    verify = api.get("/api/v1/tasks/next/").json()
    assert verify["input"] == {"docs": ["id.pdf"]}


def test_another_agents_task_is_refused_with_a_stable_code(world):
    clerk, other = world.agents
    api, intruder = client_for(clerk), client_for(other)
    api.post("/api/v1/runs/", {"template": onboarding(world).key}, format="json")
    task = api.get("/api/v1/tasks/next/").json()
    refused = intruder.post(f"/api/v1/tasks/{task['id']}/complete/", {"output": {}}, format="json")
    assert refused.status_code == 403
    assert refused.json()["error"]["code"] == "task_not_yours"
    assert intruder.get(f"/api/v1/tasks/{task['id']}/context/").json()["error"]["code"] == (
        "task_not_yours"
    )
    assert StepRun.objects.get(pk=task["id"]).status == StepStatus.RUNNING


def test_handoff_and_escalation_to_a_person(world):
    clerk, other = world.agents
    api = client_for(clerk)
    api.post("/api/v1/runs/", {"template": onboarding(world).key}, format="json")
    gather = api.get("/api/v1/tasks/next/").json()
    handed = api.post(f"/api/v1/tasks/{gather['id']}/handoff/",
                      {"agent": other.slug, "reason": "needs French"}, format="json")  # fmt: skip
    assert handed.status_code == 200 and handed.json()["assignee"] == other.slug
    assert api.get("/api/v1/tasks/next/").status_code == 204
    theirs = client_for(other)
    gather = theirs.get("/api/v1/tasks/next/").json()
    theirs.post(f"/api/v1/tasks/{gather['id']}/complete/", {"output": {"docs": []}}, format="json")
    verify = theirs.get("/api/v1/tasks/next/").json()
    escalated = theirs.post(f"/api/v1/tasks/{verify['id']}/escalate/",
                            {"reason": "document looks forged"}, format="json")  # fmt: skip
    assert escalated.status_code == 200 and escalated.json()["status"] == "escalated"
    run = Run.objects.get(pk=verify["run"])
    assert run.status == RunStatus.RUNNING
    assert {"handoff", "escalated_to_person"} <= set(run.events.values_list("kind", flat=True))


def test_bad_input_gets_clear_errors_and_changes_nothing(world):
    clerk = world.agents[0]
    api = client_for(clerk)
    unknown = api.post("/api/v1/runs/", {"template": "nope"}, format="json")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "not_found"
    template = onboarding(world)
    bad = api.post("/api/v1/runs/", {"template": template.key, "context": [1]}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "context_invalid"
    extra = api.post("/api/v1/runs/", {"template": template.key, "x": 1}, format="json")
    assert extra.json()["error"]["code"] == "unknown_field"
    assert not Run.objects.exists()
    api.post("/api/v1/runs/", {"template": template.key}, format="json")
    task = api.get("/api/v1/tasks/next/").json()
    not_object = api.post(f"/api/v1/tasks/{task['id']}/complete/", {"output": [1]}, format="json")
    assert not_object.status_code == 400
    assert StepRun.objects.get(pk=task["id"]).status == StepStatus.RUNNING


def test_a_token_without_the_tasks_scope_cannot_take_tasks(world):
    clerk = world.agents[0]
    client_for(clerk).post("/api/v1/runs/", {"template": onboarding(world).key}, format="json")
    reader = client_for(clerk, scopes=["agent:read"])
    refused = reader.get("/api/v1/tasks/next/")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "scope_missing"
    assert reader.get("/api/v1/tasks/").status_code == 200


def test_starting_the_same_run_twice_with_one_key_gives_one_run(world):
    api = client_for(world.agents[0])
    template = onboarding(world)
    first = api.post("/api/v1/runs/", {"template": template.key}, format="json",
                     HTTP_IDEMPOTENCY_KEY="batch-7")  # fmt: skip
    again = api.post("/api/v1/runs/", {"template": template.key}, format="json",
                     HTTP_IDEMPOTENCY_KEY="batch-7")  # fmt: skip
    assert first.json()["id"] == again.json()["id"] and Run.objects.count() == 1
