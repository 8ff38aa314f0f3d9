"""The prefork pool on the embedded broker (``autonomy.pool``): killing its children, idle
ones included, changes nothing but the timing. A real ``celery worker`` on the filesystem
broker (which has no event loop, so Celery gives it billiard's blocking pool), whatever broker
the rest of the suite uses."""

import os
import signal
import time
from pathlib import Path

import pytest
from celery import Celery
from kombu import Connection

from tests.conftest import start_celery_worker, stop_celery_worker, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # gone meanwhile
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def test_a_prefork_worker_on_the_embedded_broker_survives_its_children_killed_while_idle(
    tmp_path, settings
):
    """With billiard's own blocking pool one idle child always holds the lock of the pipe
    every child reads jobs from (it blocks reading while holding it): killing the idle
    children left the lock taken forever and the worker never ran a task again; this test
    then timed out waiting for the first task after the kill."""
    data = tmp_path / "data"
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    worker = start_celery_worker(
        tmp_path / "worker.log",
        env={"CELERY_BROKER_URL": "filesystem://localhost/", "AUTONOMY_DATA_DIR": str(data)},
        args=["--pool=prefork", "--concurrency=2", "-I", "tests.bench.noop"],
    )
    broker = data / "broker"
    # Not through a Celery app's own broker setting: CELERY_BROKER_URL in the environment
    # (Redis, in CI) would win over it.
    connection = Connection(
        "filesystem://localhost/",
        transport_options={
            "data_folder_in": str(broker / "out"),
            "data_folder_out": str(broker / "out"),
            "control_folder": str(broker / "control"),
        },
    )
    # Not the current app either: shared tasks sent later in this process would go to its
    # default broker.
    producer = Celery("pool-test", set_as_current=False)

    def run(name: str) -> Path:
        marker = tmp_path / name
        producer.send_task("bench.noop", args=[str(marker)], queue=queue, connection=connection)
        return marker

    try:
        assert "(pool)" in worker.log()  # autonomy.pool's TaskPool, as CELERY_WORKER_POOL says
        first = wait_for(lambda: len(children(worker.proc.pid)) == 2 and children(worker.proc.pid),
                         what="two pool children")  # fmt: skip
        marker = run("before")
        wait_for(marker.exists, timeout=20, what="a task before the kill")
        time.sleep(0.5)  # both children back to waiting for work, one of them reading the pipe
        for pid in first:
            os.kill(pid, signal.SIGKILL)
        wait_for(lambda: len(children(worker.proc.pid) - first) == 2, timeout=20,
                 what="two new pool children")  # fmt: skip
        markers = [run(f"after-{n}") for n in range(4)]
        wait_for(lambda: all(m.exists() for m in markers), timeout=20, what="tasks after the kill")
        assert worker.proc.poll() is None
    finally:
        stop_celery_worker(worker)
        connection.release()
