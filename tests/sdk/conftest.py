from tests.workflows.conftest import world  # noqa: F401  (the same small world)
