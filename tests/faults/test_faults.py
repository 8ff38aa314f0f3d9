"""The fault suite at a small size (``make faults`` runs it at 1,000 agents and 10,000
actions): workers SIGKILLed, the broker restarted and database sessions dropped while agents
work through the API, and nothing accepted lost, nothing done twice, the audit log intact."""

import glob
import re
import shutil
import subprocess
import sys

from tests import realparts


def test_nothing_accepted_is_lost_and_nothing_happens_twice_under_faults():
    if shutil.which("redis-server") is None:
        realparts.missing("redis-server", "apt-get install redis-server")
    if not glob.glob("/usr/lib/postgresql/*/bin/initdb") and not shutil.which("initdb"):
        realparts.missing("PostgreSQL's initdb", "apt-get install postgresql")
    # A looser recovery goal than ``make faults``'s 10 s: here the suite shares two cores
    # with the rest of the test run.
    done = subprocess.run(
        [sys.executable, "-m", "tests.faults.run", "--agents", "10", "--actions", "150",
         "--rate", "6", "--fault-every", "2", "3", "--recovery-goal", "30"],
        cwd=realparts.ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    output = "\n".join(
        line for line in (done.stdout + done.stderr).splitlines() if not line.startswith("{")
    )
    lines = dict(re.findall(r"^(\w+): ([\d.]+)$", done.stdout, re.MULTILINE))
    assert done.returncode == 0, output[-6000:]
    assert int(lines["accepted_actions"]) >= 150
    assert lines["lost_actions"] == "0" and lines["duplicated_side_effects"] == "0"
    assert int(lines["completed_actions"]) == int(lines["accepted_actions"])
    assert int(lines["faults_injected"]) >= 3
