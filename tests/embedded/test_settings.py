"""Only the embedded default loads ``embedded``: a broker server means Celery's own transport
and pool, and the app is not installed."""

import json
import os
import subprocess
import sys

from tests.realparts import ROOT

SHOW = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'apps': s.INSTALLED_APPS, "
    "'transport': getattr(s, 'CELERY_BROKER_TRANSPORT', None), "
    "'pool': getattr(s, 'CELERY_WORKER_POOL', None)}))"
)


def settings_with(**env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DATABASE_"))}
    result = subprocess.run(
        [sys.executable, "-c", SHOW], cwd=ROOT, env={**clean, **env},
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_embedded_default_selects_its_transport_and_the_threads_pool(tmp_path):
    shown = settings_with(AUTONOMY_DATA_DIR=str(tmp_path))
    assert "embedded" in shown["apps"]
    assert shown["transport"] == "embedded.broker:Transport"
    assert shown["pool"] == "threads"


def test_a_broker_server_never_loads_the_embedded_machinery(tmp_path):
    shown = settings_with(AUTONOMY_DATA_DIR=str(tmp_path), CELERY_BROKER_URL="redis://h:6379/0")
    assert "embedded" not in shown["apps"]
    assert shown["transport"] is None and shown["pool"] is None
