"""`make run` from a fresh clone reaches a page that answers, with its worker, on the
embedded default (no DATABASE_URL, no broker server); Ctrl-C stops everything."""

import os
import shutil
import signal
import subprocess
import urllib.request

import pytest

from tests.conftest import wait_for
from tests.realparts import ROOT, free_port, missing


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


@pytest.mark.timeout(900)
def test_make_run_from_a_fresh_clone_serves_the_portal_and_a_worker(tmp_path):
    for tool in ("git", "make"):
        if shutil.which(tool) is None:
            missing(tool, "install it to run the fresh-clone check")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True)
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_URL", "CELERY_", "DJANGO_", "AUTONOMY_", "VIRTUAL_ENV"))
    }
    log_path = tmp_path / "make-run.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            ["make", "run", f"PORT={port}", f"SYSTEMS_PORT={free_port()}"],
            cwd=clone,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: _get(f"{base}/healthz")[0] == 200 or proc.poll() is not None,
            timeout=800,
            interval=1,
            what="make run to serve /healthz",
        )
        assert proc.poll() is None, log_path.read_text()[-4000:]
        status, page = _get(f"{base}/admin/login/")
        assert status == 200 and "Autonomy OS" in page
        assert _get(f"{base}/readyz")[0] == 200
        wait_for(lambda: " ready." in log_path.read_text(), timeout=60, what="the Celery worker")
        output = log_path.read_text()
        assert "Demo admin: username 'admin'" in output
        assert "seed_demo: created 6 business units, 11 roles, 10 owners, 1000 agents" in output
        assert (clone / "var" / "autonomy.sqlite3").exists()
    finally:
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in the terminal does
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise
    wait_for(lambda: _get(f"{base}/healthz")[0] == 0, timeout=30, what="the web server to stop")
    leftovers = subprocess.run(["pgrep", "-f", str(clone)], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "processes survived Ctrl-C"
