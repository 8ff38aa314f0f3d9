import pytest

from autonomy import connectors
from tests.workflows.fixtures import build_world


@pytest.fixture
def world(transactional_db):
    return build_world()


@pytest.fixture
def during_call(monkeypatch):
    """Lets a test do something (cancel the run) while the ERP is executing a call."""
    ledger = connectors.EXECUTORS["erp"]
    hooks = {}

    def erp(*, operation, **kwargs):
        hook = hooks.pop(operation.slug, None)
        if hook is not None:
            hook()
        return ledger(operation=operation, **kwargs)

    monkeypatch.setitem(connectors.EXECUTORS, "erp", erp)
    return hooks
