import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from tests import realparts
from tests.factories import UserFactory, make_agent

ARTIFACTS = realparts.ROOT / "test-artifacts"


def pytest_configure(config):
    # Each test process gets its own Celery queue, so parallel test workers never take each
    # other's tasks from the shared broker.
    from django.conf import settings

    from config.celery import app

    queue = f"autonomy-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}-{uuid.uuid4().hex[:8]}"
    settings.CELERY_TASK_DEFAULT_QUEUE = queue
    app.conf.task_default_queue = queue


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if realparts.REQUIRE_ALL and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under AUTONOMY_REQUIRE_ALL=1: {report.longrepr}"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """pytest-django's test databases; before they are dropped, no other session may be left
    on this process's PostgreSQL test database, or the drop fails with "is being accessed by
    other users" and the database is left behind (seen twice in CI, from an unknown holder).

    A session that is still there a few seconds after the last test (a killed worker's
    backend exits on its own shortly after) is named in a warning, to find its holder by,
    and ended."""
    yield
    with django_db_blocker.unblock():
        left = _other_sessions(wait=5.0)
    if left:
        import warnings

        warnings.warn(f"sessions still open on the test database, ended: {left}", stacklevel=1)


def _other_sessions(*, wait: float) -> list[tuple]:
    from django.db import connection

    if connection.vendor != "postgresql":
        return []
    others = "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    deadline = time.monotonic() + wait
    with connection.cursor() as cursor:
        while True:
            cursor.execute(
                "SELECT pid, application_name, client_port, backend_start, state,"
                f" left(query, 120) {others}"
            )
            left = cursor.fetchall()
            if not left or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if left:
            cursor.execute(f"SELECT pg_terminate_backend(pid) {others}")
    connection.close()
    return left


# --- people, agents, API clients ------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_registry_caches():
    """Each test starts with empty process caches of operations (the gate's and the workflow
    steps'), compiled policies, autonomy levels, content rules and standing approvals.

    All are keyed by the policy-store version, which never repeats in one database's life;
    but tests flush the database and travel in time (``time_machine``), and the version is
    time-based, so a later test can see an earlier test's version number with other content.
    """
    from autonomy import levels, selectors
    from autonomy.content import rules as content_rules
    from autonomy.policy import engine
    from autonomy.policy import trials as policy_trials
    from autonomy.standing import selectors as standing_selectors
    from workflows import selectors as workflow_selectors

    selectors.operations_forget()
    engine.compiled_forget()
    policy_trials.running_forget()
    levels.index_forget()
    content_rules.rules_forget()
    standing_selectors.index_forget()
    workflow_selectors.step_operations_forget()


@pytest.fixture(autouse=True)
def _fresh_cache():
    """Each test starts with an empty cache: it holds the failed-token counts per client
    address (agents.authentication), and the test client always comes from 127.0.0.1, so one
    test's bad tokens would otherwise lock the next tests out."""
    from django.core.cache import cache

    cache.clear()


@pytest.fixture(autouse=True)
def _celery_app_stays_current():
    """Shared tasks are sent through Celery's *current* app. A test that builds another app
    without ``set_as_current=False`` makes that one current, and every task the rest of this
    test process sends goes to its default broker, where no worker listens (it happened:
    later worker tests waited for runs that never moved). Fail the test that did it."""
    from celery import current_app

    from config.celery import app

    yield
    if current_app._get_current_object() is not app:
        app.set_current()
        pytest.fail("this test made another Celery app current: pass set_as_current=False")


@pytest.fixture
def it_admin(db):
    from django.contrib.auth.models import Group

    from agents.portal_roles import PortalRole, group_name

    user = UserFactory(username="ita", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(PortalRole.IT_ADMIN)))
    return user


@pytest.fixture
def viewer(db):
    from django.contrib.auth.models import Group

    from agents.portal_roles import PortalRole, group_name

    user = UserFactory(username="viewer", is_staff=True)
    user.groups.add(Group.objects.get(name=group_name(PortalRole.VIEWER)))
    return user


@pytest.fixture
def agent(db):
    return make_agent(slug="invoice-bot")


@pytest.fixture
def api():
    return APIClient()


def bearer(client: APIClient, token: str) -> APIClient:
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def assert_envelope(response, status: int, code: str) -> dict:
    """The answer is ``status`` with the JSON error envelope and ``code``; returns the error."""
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    error = response.json()["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and isinstance(error["details"], dict)
    return error


# --- real parts: PostgreSQL, Celery worker ---------------------------------------------------


@pytest.fixture
def postgres(db):
    from django.db import connection

    if connection.vendor != "postgresql":
        realparts.missing("PostgreSQL", "set DATABASE_URL=postgres://... to run this test")
    return connection


def _database_url() -> str:
    from django.db import connection

    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


class WorkerProcess:
    def __init__(self, proc, log_path: Path, mail_dir: Path):
        self.proc, self.log_path, self.mail_dir = proc, log_path, mail_dir

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def mails(self) -> list[str]:
        """The mails the worker has finished writing. Django's file backend creates a mail's
        file before it writes the message, and ends each message with a line of 79 dashes:
        a file without that end is still being written (reading it early failed CI twice)."""
        texts = (p.read_text() for p in sorted(self.mail_dir.glob("*.log")))
        return [text for text in texts if text.endswith("-" * 79 + "\n")]


def at_once(*calls) -> list:
    """Run each call in its own thread and database connection, all released together by a
    barrier. Each outcome: "ok" when the call returned, the code of a ``DomainError`` it
    raised, or the class name of any other exception (a deadlock is a finding too)."""
    import threading

    from django.db import connection

    from autonomy.errors import DomainError

    outcomes, barrier = [None] * len(calls), threading.Barrier(len(calls))

    def run(i, call):
        try:
            barrier.wait()
            call()
            outcomes[i] = "ok"
        except DomainError as exc:
            outcomes[i] = exc.code
        except Exception as exc:  # noqa: BLE001 - reported as the outcome
            outcomes[i] = type(exc).__name__
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def wait_for(predicate, *, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    """Poll until predicate() is truthy; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@pytest.fixture
def celery_worker_env() -> dict[str, str]:
    """Extra environment for the worker, merged last; a test overrides this to change it
    (say, to send its e-mail over SMTP instead of into files)."""
    return {}


def start_celery_worker(
    log_path: Path, *, mail_dir: Path | None = None, env: dict | None = None, args=()
) -> WorkerProcess:
    """Start a real ``celery worker`` process on the configured broker and test database and
    wait until it is ready. The caller stops it (``stop_celery_worker``)."""
    from django.conf import settings

    mail_dir = mail_dir or log_path.parent / "mail"
    mail_dir.mkdir(exist_ok=True)
    full_env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "CELERY_BROKER_URL": settings.CELERY_BROKER_URL,
        "CELERY_TASK_DEFAULT_QUEUE": settings.CELERY_TASK_DEFAULT_QUEUE,
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(mail_dir),
        "AUTONOMY_DATA_DIR": str(settings.DATA_DIR),
        **(env or {}),
    }
    pool = [] if any(a.startswith("--pool") for a in args) else ["--pool=solo"]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", *pool,
             "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel=INFO", *args],
            cwd=realparts.ROOT, env=full_env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    worker = WorkerProcess(proc, log_path, mail_dir)
    try:
        wait_for(lambda: " ready." in worker.log() or proc.poll() is not None, what="worker ready")
        assert proc.poll() is None, f"celery worker died:\n{worker.log()}"
    except BaseException:
        stop_celery_worker(worker)
        raise
    return worker


def stop_celery_worker(worker: WorkerProcess) -> None:
    proc = worker.proc
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait(timeout=15)


@pytest.fixture
def celery_worker(transactional_db, tmp_path, celery_worker_env):
    """A real ``celery worker`` process on the configured broker, seeing the test database."""
    worker = start_celery_worker(
        tmp_path / "worker.log", mail_dir=tmp_path / "mail", env=celery_worker_env
    )
    try:
        yield worker
    finally:
        stop_celery_worker(worker)


@pytest.fixture
def it_admin_client(it_admin):
    client = APIClient()
    client.force_authenticate(it_admin)
    return client


@pytest.fixture
def eager(transactional_db):
    """Celery tasks run in this process as soon as the transaction that sent them commits."""
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False
