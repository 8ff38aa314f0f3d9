"""`make bench`'s action-gate and workflow benchmarks run end to end at toy sizes.

Only that every figure comes out, printed and in the JSON, as a positive number: timings
on a toy registry (and on a busy test machine) say nothing, so no target is asserted here.
"""

import json
import os
import subprocess
import sys

from tests.bench import workflows
from tests.bench.gate import REQUIRED
from tests.realparts import ROOT

TOY = {
    "--agents-small": 5,
    "--agents-large": 20,
    "--policies-small": 5,
    "--policies-large": 20,
    "--rounds": 20,
    "--series": 2,
    "--requests": 10,
    "--blocks": 2,
    "--warmup": 5,
}


def test_gate_bench_prints_and_writes_every_figure(tmp_path):
    out = tmp_path / "gate.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_GATE_")}
    env.pop("DATABASE_URL", None)  # a throwaway SQLite: no database created on any server
    args = [str(a) for pair in TOY.items() for a in pair]
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.gate", *args, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    figures = json.loads(out.read_text())
    assert set(REQUIRED) <= set(figures)
    assert set(printed) == set(figures)
    for name, value in figures.items():
        assert isinstance(value, int | float) and value > 0, (name, value)
        assert float(printed[name]) == value, name
    assert figures["bench_agents_large"] == 20 and figures["policy_statements_total"] == 20


WORKFLOWS_TOY = {
    "--chain-steps": 3,
    "--series": 1,
    "--runs": 4,
    "--deadline": 60,
    "--query-steps": 6,
    "--query-runs": 3,
}


def test_workflows_bench_prints_and_writes_every_figure(tmp_path):
    out = tmp_path / "workflows.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_WORKFLOWS_")}
    env.pop("DATABASE_URL", None)  # a throwaway SQLite; the broker is the configured one
    args = [str(a) for pair in WORKFLOWS_TOY.items() for a in pair]
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.workflows", *args, "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    figures = json.loads(out.read_text())
    assert set(workflows.REQUIRED) <= set(figures)
    assert set(printed) == set(figures)
    for name, value in figures.items():
        assert isinstance(value, int | float), (name, value)
        assert float(printed[name]) == value, name
    assert figures["runs_completed"] == figures["runs_started"] == 4
    assert figures["queries_per_step_growth"] == 0
    positive = set(figures) - {"queries_per_step_growth"}
    assert all(figures[name] > 0 for name in positive), figures


def test_intervention_bench_prints_and_writes_every_figure(tmp_path):
    from tests.bench import intervention

    out = tmp_path / "intervention.json"
    env = {k: v for k, v in os.environ.items() if k != "BENCH_KILLS"}
    env.pop("DATABASE_URL", None)  # a throwaway SQLite
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.intervention", "--kills", "3", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    figures = json.loads(out.read_text())
    assert set(intervention.REQUIRED) <= set(figures)
    assert set(printed) == set(figures)
    assert figures["kill_rounds"] == 3
    assert all(value > 0 for value in figures.values()), figures


def test_activity_bench_prints_and_writes_every_figure(tmp_path):
    from tests.bench import activity

    out = tmp_path / "activity.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_STREAM_")}
    env.pop("DATABASE_URL", None)  # a throwaway SQLite
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.activity", "--rate", "40", "--seconds", "1",
         "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]

    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    figures = json.loads(out.read_text())
    assert set(activity.REQUIRED) <= set(figures)
    assert set(printed) == set(figures)
    assert figures["stream_events_received"] == figures["stream_events_sent"] == 40
    assert figures["stream_lag_p99_ms"] >= figures["stream_lag_p50_ms"]


def test_dashboard_bench_prints_and_writes_every_figure(tmp_path):
    from tests.bench import dashboard

    out = tmp_path / "dashboard.json"
    env = {k: v for k, v in os.environ.items() if k != "BENCH_DASHBOARD_ROWS"}
    env.pop("DATABASE_URL", None)  # a throwaway SQLite
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.dashboard", "--rows", "12000", "--calls", "3",
         "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]

    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    figures = json.loads(out.read_text())
    assert set(dashboard.REQUIRED) <= set(figures)
    assert set(printed) == set(figures)
    assert figures["dashboard_rows"] == 12000 and figures["dashboard_window_rows"] == 400
    assert all(value > 0 for value in figures.values()), figures
