"""Worker liveness (``autonomy.liveness``): worker processes beat, name themselves on the
work they execute, and the sweeps take back the work of a worker that stopped beating."""

import os
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from autonomy import actions, liveness, selectors, services
from autonomy.models import ActionRequest, ActionStatus, WorkerBeat
from tests.conftest import wait_for
from tests.factories import UserFactory


@pytest.mark.django_db(transaction=True)
def test_a_worker_process_beats_while_it_runs_and_its_row_goes_when_it_stops(settings):
    settings.AUTONOMY_WORKER_BEAT_SECONDS = 0.05
    assert liveness.current_worker() == ""
    liveness.start()
    try:
        name = liveness.current_worker()
        assert name.endswith(f":{os.getpid()}")
        first = WorkerBeat.objects.get(pk=name).beat_at  # written before start() returned
        wait_for(lambda: WorkerBeat.objects.get(pk=name).beat_at > first, what="a second beat")
        assert name in services.workers_alive()
    finally:
        liveness.stop()
    assert liveness.current_worker() == ""
    assert not WorkerBeat.objects.filter(pk=name).exists()


def test_a_prefork_pools_parent_does_not_beat(settings):
    """It executes nothing and forks children: no thread of ours may run in it."""
    from types import SimpleNamespace

    from celery.concurrency.prefork import TaskPool

    settings.AUTONOMY_WORKER_BEAT_SECONDS = 0.05
    consumer = SimpleNamespace(pool=TaskPool.__new__(TaskPool))
    liveness.start(sender=consumer)
    assert liveness.current_worker() == ""


def test_silent_workers_are_not_alive_and_their_rows_are_pruned(db):
    now = timezone.now()
    services.worker_beat(name="host-a:1", now=now)
    services.worker_beat(name="host-b:2", now=now - timedelta(seconds=21))
    assert services.workers_alive(now=now) == {"host-a:1"}
    assert services.workers_prune(now=now) == 1
    assert set(WorkerBeat.objects.values_list("name", flat=True)) == {"host-a:1"}


def test_an_action_whose_worker_stopped_beating_is_stalled_before_its_lease(registry):
    action, _ = actions.action_request(
        agent=registry.agent, operation_key="erp.read-invoice", params={}
    )
    started = datetime(2030, 1, 1, tzinfo=UTC)
    ActionRequest.objects.filter(pk=action.pk).update(
        status=ActionStatus.EXECUTING, started_at=started, attempts=1, worker="host-a:1"
    )
    lease, soon = timedelta(seconds=300), started + timedelta(seconds=5)
    stalled = selectors.actions_stalled
    assert stalled(now=soon, lease=lease, alive={"host-a:1"}) == []  # its worker beats
    assert stalled(now=soon, lease=lease, alive={"host-b:2"}) == [action.pk]  # it does not


def test_an_action_executed_again_names_the_worker_executing_it(registry):
    action, _ = actions.action_request(
        agent=registry.agent, operation_key="erp.read-invoice", params={}
    )
    ActionRequest.objects.filter(pk=action.pk).update(
        status=ActionStatus.EXECUTING, started_at=timezone.now(), attempts=1, worker="gone:1"
    )
    # Young, but its worker is not alive: executed again, now in this process's name ('').
    done = actions.action_execute(action_id=action.pk)
    assert (done.status, done.attempts, done.worker) == (ActionStatus.SUCCEEDED, 2, "")


def test_a_young_action_whose_worker_beats_is_left_to_it(registry):
    action, _ = actions.action_request(
        agent=registry.agent, operation_key="erp.read-invoice", params={}
    )
    services.worker_beat(name="host-a:1")
    ActionRequest.objects.filter(pk=action.pk).update(
        status=ActionStatus.EXECUTING, started_at=timezone.now(), attempts=1, worker="host-a:1"
    )
    left = actions.action_execute(action_id=action.pk)
    assert (left.status, left.attempts) == (ActionStatus.EXECUTING, 1)


def test_the_workers_list_shows_each_worker_and_whether_it_still_beats(client, db):
    client.force_login(UserFactory(username="it-admin", is_staff=True, is_superuser=True))
    services.worker_beat(name="host-a:11")
    services.worker_beat(name="host-b:22", now=timezone.now() - timedelta(minutes=5))
    response = client.get(reverse("admin:autonomy_workerbeat_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    assert "host-a:11" in page and "host-b:22" in page and "5 min ago" in page
    assert page.count('alt="True"') == 1 and page.count('alt="False"') == 1
    change = reverse("admin:autonomy_workerbeat_change", args=["host-a:11"])
    assert client.post(change, {"beat_at": "2030-01-01 00:00:00"}).status_code == 403


def _drop_other_sessions(connection) -> int:
    """End every other session on this test database, as a database restart or a failover
    would (the test's own session stays)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_worker_beats_on_after_the_database_drops_its_connection_and_stops_cleanly(
    postgres, settings
):
    settings.AUTONOMY_WORKER_BEAT_SECONDS = 0.05
    liveness.start()
    try:
        name = liveness.current_worker()
        wait_for(lambda: WorkerBeat.objects.filter(pk=name).exists(), what="the first beat")
        assert _drop_other_sessions(postgres) >= 1  # the beat thread's session
        dropped_at = timezone.now()
        wait_for(
            lambda: WorkerBeat.objects.get(pk=name).beat_at > dropped_at,
            timeout=5,
            what="a beat after the connection was dropped",
        )
    finally:
        liveness.stop()
    assert not WorkerBeat.objects.filter(pk=name).exists()  # its shutdown removed its row
