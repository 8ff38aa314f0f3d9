"""Long-running processes keep what they built to start out of full garbage collections."""

import gc
import os
import subprocess
import sys

from tests.realparts import ROOT


def test_a_worker_freezes_its_startup_objects_when_ready_and_in_each_forked_child(settings):
    from celery.signals import worker_process_init, worker_ready

    import config.celery  # noqa: F401 (connects the receivers)

    settings.AUTONOMY_WORKER_BEAT_SECONDS = 0  # no heartbeat thread in the test process

    try:
        for signal in (worker_ready, worker_process_init):
            gc.unfreeze()
            assert gc.get_freeze_count() == 0
            signal.send(sender=None)
            assert gc.get_freeze_count() > 10_000, signal.name
    finally:
        gc.unfreeze()


def test_the_web_application_freezes_its_startup_objects(tmp_path):
    env = {**os.environ, "AUTONOMY_DATA_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": ""}
    env.pop("DJANGO_SETTINGS_MODULE")
    for module in ("config.wsgi", "config.asgi"):
        out = subprocess.run(
            [sys.executable, "-c", f"import gc, {module}; print(gc.get_freeze_count())"],
            cwd=ROOT, env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        assert int(out.stdout.split()[-1]) > 10_000, (module, out.stderr[-2000:])
