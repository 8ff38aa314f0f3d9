"""A broker outage (issue 21, defect 16): publishes made while the broker is away go out when
it returns, and what a restarted broker lost is sent again as soon as a worker reconnects,
instead of waiting for the sweeps (up to ~45 s)."""

import os
import subprocess
import sys
import time

import pytest

from autonomy import actions
from autonomy.models import ActionRequest, ActionStatus
from tests.autonomy.gate_fixtures import build_registry
from tests.conftest import start_celery_worker, stop_celery_worker, wait_for
from tests.faults.services import OwnRedis
from tests.realparts import ROOT

PUBLISH_ONE = """
import django
django.setup()
from autonomy import dispatch
dispatch.publisher.submit("action-published-in-an-outage")
print("submitted", flush=True)
dispatch.publisher.flush(timeout=60)
"""


def test_an_action_published_while_the_broker_is_away_goes_out_when_it_returns(tmp_path):
    broker = OwnRedis(tmp_path)
    broker.start()
    broker.kill()  # the outage: nothing listens on its port
    env = {**os.environ, "CELERY_BROKER_URL": broker.url, "CELERY_TASK_DEFAULT_QUEUE": "faults",
           "DJANGO_SETTINGS_MODULE": "config.settings", "AUTONOMY_PUBLISH_LINGER_MS": "0"}  # fmt: skip
    web = subprocess.Popen(
        [sys.executable, "-c", PUBLISH_ONE], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        assert web.stdout.readline().strip() == "submitted"
        time.sleep(2)  # the outage lasts longer than Celery's default retries (~0.6 s)
        broker.start()
        output = web.communicate(timeout=90)[0]
        import redis

        queued = redis.Redis(port=broker.port).lrange("faults", 0, -1)
        assert any(b"action-published-in-an-outage" in message for message in queued), output
    finally:
        web.kill()
        broker.stop()


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_reconnects_sends_again_what_the_restarted_broker_lost(tmp_path):
    broker = OwnRedis(tmp_path)
    broker.start()
    worker = start_celery_worker(tmp_path / "worker.log", env={"CELERY_BROKER_URL": broker.url})
    try:
        registry = build_registry()
        # Decided and committed; its message goes to the suite's broker, not this worker's:
        # for this worker it is a message the broker lost.
        action, _ = actions.action_request(
            agent=registry.agent, operation_key="erp.post-invoice",
            params={"invoice_id": "INV-9", "amount": 10},
        )  # fmt: skip
        assert action.status == ActionStatus.APPROVED
        broker.kill()
        broker.start()  # empty: a restart without persistence
        wait_for(
            lambda: ActionRequest.objects.get(pk=action.pk).status == ActionStatus.SUCCEEDED,
            timeout=20,
            what=f"the action executed after the broker returned\n{worker.log()}",
        )
    finally:
        stop_celery_worker(worker)
        broker.stop()
