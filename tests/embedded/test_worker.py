"""The embedded default's worker (the filesystem broker, ``make run``) runs its tasks on
threads: no child process to lose. billiard's blocking prefork pool, which a broker without
an event loop gets, stopped for good when an idle child was killed (it held the lock of the
pipe every child reads jobs from); this is a real ``celery worker`` on the filesystem broker,
whatever broker the rest of the suite uses."""

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


def test_the_embedded_worker_runs_tasks_without_child_processes(tmp_path, settings):
    data = tmp_path / "data"
    queue = settings.CELERY_TASK_DEFAULT_QUEUE
    worker = start_celery_worker(
        tmp_path / "worker.log",
        env={"CELERY_BROKER_URL": "filesystem://localhost/", "AUTONOMY_DATA_DIR": str(data)},
        # -P prefork is the command line's default: the configured pool wins over it, as in
        # the Procfile, which names none.
        args=["--pool=prefork", "--concurrency=2", "-I", "tests.bench.noop"],
    )
    broker = data / "broker"
    # Not through a Celery app's own broker setting: CELERY_BROKER_URL in the environment
    # (Redis, in CI) would win over it. Not the current app either: shared tasks sent later
    # in this process would go to its default broker.
    connection = Connection(
        "filesystem://localhost/",
        transport="embedded.broker:Transport",
        transport_options={
            "data_folder_in": str(broker / "out"),
            "data_folder_out": str(broker / "out"),
            "control_folder": str(broker / "control"),
        },
    )
    producer = Celery("worker-test", set_as_current=False)
    try:
        assert "(thread)" in worker.log()  # concurrency: 2 (thread)
        markers = [tmp_path / f"task-{n}" for n in range(4)]
        for marker in markers:
            producer.send_task("bench.noop", args=[str(marker)], queue=queue, connection=connection)
        wait_for(lambda: all(m.exists() for m in markers), timeout=20, what="four tasks")
        assert children(worker.proc.pid) == set()
        assert worker.proc.poll() is None
    finally:
        stop_celery_worker(worker)
        connection.release()
