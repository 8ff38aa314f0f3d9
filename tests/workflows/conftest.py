import pytest

from tests.workflows.fixtures import build_world


@pytest.fixture
def world(transactional_db):
    return build_world()
