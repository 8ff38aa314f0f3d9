import pytest

from tests.workflows.fixtures import build_world


@pytest.fixture
def eager(transactional_db):
    """Celery tasks run in this process as soon as the transaction that sent them commits."""
    from config.celery import app

    app.conf.task_always_eager = True
    app.conf.task_eager_propagates = True
    yield
    app.conf.task_always_eager = False
    app.conf.task_eager_propagates = False


@pytest.fixture
def world(transactional_db):
    return build_world()
