from tests.autonomy.gate_fixtures import registry  # noqa: F401  (shared by the gate tests)
