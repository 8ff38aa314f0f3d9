import pytest

from demo.systems.server import serve_in_thread


@pytest.fixture
def demo_systems(tmp_path):
    """The demo ERP, CRM and ITSM on a free port, with their own SQLite file."""
    server = serve_in_thread(port=0, database=tmp_path / "demo-systems.sqlite3", token="demo-tok")
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
