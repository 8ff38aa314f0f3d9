"""The run pages of the portal: the list, one run's timeline, and people's controls."""

import pytest
from django.contrib.auth.models import Group
from django.contrib.messages import get_messages

from agents.portal_roles import PortalRole, group_name
from autonomy import grants
from tests.factories import UserFactory
from tests.workflows.fixtures import published, step
from workflows import services
from workflows.models import Run, RunEvent, RunStatus, StepRun, StepStatus

# Session, user, the page's reads and the messages: the same whatever the size of the run.
# +2 on each: the portal nav asks once per request whether the user may intervene (user and
# group permissions); +2 for whether the reader is a person of the portal (is_portal_person:
# not an agent, holds a portal role). Constant, whatever the number of runs or steps.
LIST_MAX_QUERIES = 10
TIMELINE_MAX_QUERIES = 13


def person(username: str, role: PortalRole):
    user = UserFactory(username=username, is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(role)))
    return user


def signed_in(client, user):
    client.force_login(user)
    return client


def flashes(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def wide_run(world, n: int) -> Run:
    """A run of ``n`` task steps plus one operation step that waits for approval; half the
    tasks are done, so the timeline has context diffs, waits and an approval."""
    template = published(
        f"wide-{n}",
        [step(f"t{i}", None) for i in range(n)]
        + [step("post", "post-invoice", input_map={"amount": "$.amount"}, approval="always")],
    )
    run = services.run_start(template=template, context={"amount": 100}, by=world.officer)
    clerk = world.agents[0]
    for _ in range(n // 2):
        task = services.task_next(agent=clerk)
        services.task_complete(agent=clerk, step_run_id=task.pk, output={"n": 1})
    return run


def escalated_run(world) -> tuple[Run, StepRun]:
    """A run whose first step the gate denies, so it waits for a person."""
    template = published(
        "deny", [step("a", "notify", escalate_to_human=True), step("b", after=["a"])]
    )
    grants.revoke_grant(target=world.ops["notify"], to=world.clerks)
    run = services.run_start(template=template, by=world.officer)
    a = StepRun.objects.get(run=run, step__key="a")
    assert a.status == StepStatus.ESCALATED
    return run, a


# --- reading --------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [5, 40])
def test_run_list_costs_the_same_queries_for_5_and_40_runs(
    eager, world, client, django_assert_max_num_queries, n
):
    template = published(f"list-{n}", [step("a", None), step("b", None, after=["a"])])
    for _ in range(n):
        services.run_start(template=template, by=world.officer)
    signed_in(client, person("vera", PortalRole.VIEWER))
    with django_assert_max_num_queries(LIST_MAX_QUERIES):
        response = client.get("/workflows/runs/")
    assert response.status_code == 200
    assert response.content.decode().count('class="run-row"') == n


@pytest.mark.parametrize("n", [5, 40])
def test_run_timeline_costs_the_same_queries_for_5_and_40_steps(
    eager, world, client, django_assert_max_num_queries, n
):
    run = wide_run(world, n)
    assert RunEvent.objects.filter(run=run).count() >= n
    signed_in(client, person("vera", PortalRole.VIEWER))
    with django_assert_max_num_queries(TIMELINE_MAX_QUERIES):
        response = client.get(f"/workflows/runs/{run.pk}/")
    assert response.status_code == 200
    html = response.content.decode()
    assert html.count('class="step-row') == n + 1
    assert "Waiting for approval" in html
    assert "/admin/autonomy/actionrequest/" in html and "/inbox/" in html


def test_run_list_filters_by_status_and_workflow(eager, world, client):
    first = published("first", [step("a", None)])
    second = published("second", [step("a", None)])
    kept = services.run_start(template=first, by=world.officer)
    paused = services.run_start(template=first, by=world.officer)
    services.run_pause(run=paused, by=world.officer)
    services.run_start(template=second, by=world.officer)
    signed_in(client, person("vera", PortalRole.VIEWER))
    html = client.get("/workflows/runs/?status=running&template=first").content.decode()
    assert html.count('class="run-row"') == 1
    assert f'data-run-id="{kept.pk}"' in html


def test_timeline_shows_the_context_diff_of_a_completed_task(eager, world, client):
    template = published("gather", [step("gather", None), step("check", None, after=["gather"])])
    run = services.run_start(template=template, context={"customer": 7}, by=world.officer)
    task = services.task_next(agent=world.agents[0])
    services.task_complete(agent=world.agents[0], step_run_id=task.pk, output={"docs": 3})
    signed_in(client, person("vera", PortalRole.VIEWER))
    html = client.get(f"/workflows/runs/{run.pk}/").content.decode()
    assert "<code>gather.docs</code>" in html and "<code>3</code>" in html
    assert "by <strong>clerk-0</strong>" in html


def test_live_timeline_answers_not_modified_until_the_run_moves(eager, world, client):
    template = published("live", [step("a", None)])
    run = services.run_start(template=template, by=world.officer)
    signed_in(client, person("vera", PortalRole.VIEWER))
    first = client.get(f"/workflows/runs/{run.pk}/live/")
    etag = first["ETag"]
    assert client.get(f"/workflows/runs/{run.pk}/live/", HTTP_IF_NONE_MATCH=etag).status_code == 304
    task = services.task_next(agent=world.agents[0])
    services.task_complete(agent=world.agents[0], step_run_id=task.pk, output={})
    moved = client.get(f"/workflows/runs/{run.pk}/live/", HTTP_IF_NONE_MATCH=etag)
    assert moved.status_code == 200
    assert 'data-active="0"' in moved.content.decode()


def test_an_agents_service_user_cannot_read_runs(eager, world, client):
    run = services.run_start(template=published("a", [step("a", None)]), by=world.officer)
    signed_in(client, world.agents[0].service_user)
    assert client.get(f"/workflows/runs/{run.pk}/").status_code == 403


# --- controls -------------------------------------------------------------------------------


def test_viewer_cannot_pause_a_run_and_nothing_changes(eager, world, client):
    run = services.run_start(template=published("a", [step("a", None)]), by=world.officer)
    events = RunEvent.objects.filter(run=run).count()
    signed_in(client, person("vera", PortalRole.VIEWER))
    page = client.get(f"/workflows/runs/{run.pk}/").content.decode()
    assert 'data-control="pause"' not in page
    response = client.post(f"/workflows/runs/{run.pk}/pause/", {"reason": "curious"})
    assert response.status_code == 403
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert RunEvent.objects.filter(run=run).count() == events


def test_it_admin_pauses_resumes_and_cancels_a_run(eager, world, client):
    run = services.run_start(template=published("a", [step("a", None)]), by=world.officer)
    signed_in(client, person("ita", PortalRole.IT_ADMIN))
    url = f"/workflows/runs/{run.pk}"
    assert 'data-control="pause"' in client.get(f"{url}/").content.decode()

    client.post(f"{url}/pause/", {"reason": "month-end audit"})
    run.refresh_from_db()
    assert run.status == RunStatus.PAUSED
    page = client.get(f"{url}/").content.decode()
    assert 'data-control="resume"' in page and 'data-control="pause"' not in page

    client.post(f"{url}/resume/")
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING

    response = client.post(f"{url}/cancel/", {"reason": "duplicate invoice"})
    assert response.status_code == 302
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED
    kinds = list(run.events.values_list("kind", "actor"))
    assert ("paused", "ita") in kinds and ("resumed", "ita") in kinds
    assert ("cancelled", "ita") in kinds


def test_risk_officer_cannot_cancel_without_a_reason(eager, world, client):
    run = services.run_start(template=published("a", [step("a", None)]), by=world.officer)
    signed_in(client, person("rita", PortalRole.RISK_OFFICER))
    response = client.post(f"/workflows/runs/{run.pk}/cancel/", {"reason": "  "}, follow=True)
    assert "Cancel refused: say why the run is cancelled." in flashes(response)
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING


def test_resuming_a_running_run_shows_why_and_changes_nothing(eager, world, client):
    run = services.run_start(template=published("a", [step("a", None)]), by=world.officer)
    events = RunEvent.objects.filter(run=run).count()
    signed_in(client, person("ita", PortalRole.IT_ADMIN))
    response = client.post(f"/workflows/runs/{run.pk}/resume/", follow=True)
    assert response.status_code == 200
    assert flashes(response) == ["Resume refused: The run is running. Nothing was changed."]
    assert "Resume refused" in response.content.decode()
    run.refresh_from_db()
    assert run.status == RunStatus.RUNNING
    assert RunEvent.objects.filter(run=run).count() == events


def test_escalated_step_can_be_skipped_by_an_it_admin(eager, world, client):
    run, a = escalated_run(world)
    signed_in(client, person("ita", PortalRole.IT_ADMIN))
    page = client.get(f"/workflows/runs/{run.pk}/").content.decode()
    for control in ("retry", "skip", "fail"):
        assert f'/steps/{a.pk}/{control}/"' in page
    client.post(f"/workflows/runs/{run.pk}/steps/{a.pk}/skip/", {"reason": "not this month"})
    run.refresh_from_db()
    assert StepRun.objects.get(pk=a.pk).status == StepStatus.SKIPPED
    assert run.status == RunStatus.SUCCEEDED  # b ran on


def test_escalated_task_can_be_retried_by_an_it_admin(eager, world, client):
    template = published("ask", [step("check", None, escalate_to_human=True)])
    run = services.run_start(template=template, by=world.officer)
    clerk = world.agents[0]
    task = services.task_next(agent=clerk)
    services.task_escalate(agent=clerk, step_run_id=task.pk, reason="the scan is unreadable")
    task.refresh_from_db()
    assert task.status == StepStatus.ESCALATED
    signed_in(client, person("ita", PortalRole.IT_ADMIN))
    response = client.post(
        f"/workflows/runs/{run.pk}/steps/{task.pk}/retry/", {"reason": "new scan uploaded"}
    )
    assert response.status_code == 302
    task.refresh_from_db()
    assert task.status == StepStatus.WAITING_AGENT
    assert services.task_next(agent=clerk).pk == task.pk  # offered again
    assert ("step_retried", "ita") in set(run.events.values_list("kind", "actor"))


def test_skipping_a_succeeded_step_shows_why_and_changes_nothing(eager, world, client):
    run, a = escalated_run(world)
    services.step_skip(step_run=a, by=world.officer)
    b = StepRun.objects.get(run=run, step__key="b")
    assert b.status == StepStatus.SUCCEEDED
    signed_in(client, person("ita", PortalRole.IT_ADMIN))
    response = client.post(f"/workflows/runs/{run.pk}/steps/{b.pk}/skip/", follow=True)
    assert response.status_code == 200
    assert "refused" in flashes(response)[0]
    b.refresh_from_db()
    assert b.status == StepStatus.SUCCEEDED


def test_an_officer_redirects_a_waiting_task_from_the_timeline(eager, world, client):
    clerk, other = world.agents
    run = services.run_start(template=published("redirect", [step("t", None)]), by=world.officer)
    task = StepRun.objects.get(run=run)
    signed_in(client, person("ita", PortalRole.IT_ADMIN))
    page = client.get(f"/workflows/runs/{run.pk}/")
    assert f'action="/interventions/steps/{task.pk}/redirect/"' in page.content.decode()
    response = client.post(
        f"/interventions/steps/{task.pk}/redirect/",
        {"to_agent": other.slug, "reason": "clerk-0 is on leave",
         "next": f"/workflows/runs/{run.pk}/"},
    )  # fmt: skip
    assert response.status_code == 302 and response["Location"] == f"/workflows/runs/{run.pk}/"
    assert services.task_next(agent=clerk) is None
    assert services.task_next(agent=other).pk == task.pk
