from tests.autonomy.connector_fixtures import http_system, smtp_server  # noqa: F401
from tests.autonomy.gate_fixtures import registry  # noqa: F401  (shared by the gate tests)
