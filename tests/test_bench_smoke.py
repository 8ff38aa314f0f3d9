"""`make bench`'s action-gate and workflow benchmarks run end to end at toy sizes.

Only that every figure comes out, printed and in the JSON, as a positive number: timings
on a toy registry (and on a busy test machine) say nothing, so no target is asserted here.
"""

import importlib
import json
import os
import subprocess
import sys

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


def run_bench(tmp_path, module: str, args: list, *, drop, timeout: int = 120):
    """Run ``tests.bench.<module>`` on a throwaway SQLite (the broker is the configured one),
    with ``drop(name)`` environment variables removed; check it printed and wrote the same
    figures, every required one among them. Returns (figures, printed)."""
    out = tmp_path / f"{module}.json"
    env = {k: v for k, v in os.environ.items() if not drop(k) and k != "DATABASE_URL"}
    done = subprocess.run(
        [sys.executable, "-m", f"tests.bench.{module}", *map(str, args), "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, done.stderr[-4000:]

    printed = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    figures = json.loads(out.read_text())
    required = importlib.import_module(f"tests.bench.{module}").REQUIRED
    assert set(required) <= set(figures)
    assert set(printed) == set(figures)
    return figures, printed


def test_gate_bench_prints_and_writes_every_figure(tmp_path):
    args = [a for pair in TOY.items() for a in pair]
    figures, printed = run_bench(tmp_path, "gate", args, drop=lambda k: k.startswith("BENCH_GATE_"))
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
    args = [a for pair in WORKFLOWS_TOY.items() for a in pair]
    figures, printed = run_bench(
        tmp_path, "workflows", args, drop=lambda k: k.startswith("BENCH_WORKFLOWS_"), timeout=180
    )
    for name, value in figures.items():
        assert isinstance(value, int | float), (name, value)
        assert float(printed[name]) == value, name
    assert figures["runs_completed"] == figures["runs_started"] == 4
    assert figures["queries_per_step_growth"] == 0
    positive = set(figures) - {"queries_per_step_growth"}
    assert all(figures[name] > 0 for name in positive), figures


def test_intervention_bench_prints_and_writes_every_figure(tmp_path):
    figures, _ = run_bench(
        tmp_path, "intervention", ["--kills", 3], drop=lambda k: k == "BENCH_KILLS"
    )
    assert figures["kill_rounds"] == 3
    assert all(value > 0 for value in figures.values()), figures


def test_memory_bench_prints_and_writes_every_figure(tmp_path):
    figures, _ = run_bench(
        tmp_path, "memory", ["--rounds", 5, "--entries", 10], drop=lambda k: k == "BENCH_ROUNDS"
    )
    assert all(isinstance(v, int) and v > 0 for v in figures.values()), figures
    assert figures["memory_bench_entries"] == 20


def test_activity_bench_prints_and_writes_every_figure(tmp_path):
    figures, _ = run_bench(
        tmp_path,
        "activity",
        ["--rate", 40, "--seconds", 1],
        drop=lambda k: k.startswith("BENCH_STREAM_"),
    )
    assert figures["stream_events_received"] == figures["stream_events_sent"] == 40
    assert figures["stream_lag_p99_ms"] >= figures["stream_lag_p50_ms"]


def test_dashboard_bench_prints_and_writes_every_figure(tmp_path):
    figures, _ = run_bench(
        tmp_path,
        "dashboard",
        ["--rows", 12000, "--calls", 3],
        drop=lambda k: k == "BENCH_DASHBOARD_ROWS",
    )
    assert figures["dashboard_rows"] == 12000 and figures["dashboard_window_rows"] == 400
    assert all(value > 0 for value in figures.values()), figures


def test_grouped_inbox_bench_prints_and_writes_every_figure(tmp_path):
    figures, _ = run_bench(
        tmp_path,
        "inbox_groups",
        ["--rows", 300, "--group", 20, "--calls", 2],
        drop=lambda k: k in ("BENCH_GROUPED_ROWS", "BENCH_GROUP_MEMBERS"),
    )
    assert figures["inbox_grouped_rows"] == 300 and figures["group_decide_members"] == 20


def test_approval_load_bench_prints_and_writes_every_figure(tmp_path):
    figures, _ = run_bench(
        tmp_path,
        "approval_load",
        ["--rows", 12000, "--calls", 2],
        drop=lambda k: k == "BENCH_APPROVAL_ROWS",
    )
    assert figures["approval_load_rows"] == 12000 and figures["approval_load_queries"] == 9
    assert all(value > 0 for value in figures.values()), figures


def test_gate_scale_bench_prints_and_writes_its_figures(tmp_path):
    args = ["--agents", 2, "--clients", 2, "--seconds", 1, "--pairs", 1]
    figures, _ = run_bench(
        tmp_path, "gate_scale", args, drop=lambda k: k.startswith("BENCH_GATE_SCALE_")
    )
    assert figures["gate_rps_1proc"] > 0 and figures["gate_rps_2proc"] > 0
    assert figures["gate_scale_2proc"] > 0


def test_load_bench_runs_in_production_mode_on_postgresql(tmp_path, postgres):
    """gunicorn and a Celery worker in production mode on PostgreSQL, at a toy size."""
    out = tmp_path / "load.json"
    toy = {
        "BENCH_LOAD_AGENTS": "4", "BENCH_LOAD_RATES": "5", "BENCH_LOAD_STEP_S": "1",
    }  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_LOAD_")}
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.load", "--json", str(out)],
        cwd=ROOT, env={**env, **toy}, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    figures = json.loads(out.read_text())
    # Every request of the one rate was accepted by the production-mode server; whether its
    # p99 met 100 ms on a busy test machine says nothing, so the figure is not asserted.
    assert "actions_per_s_e2e_pg" in figures
    assert "5/s: 5/5 accepted" in done.stderr, done.stderr[-4000:]


def test_guardrail_bench_prints_and_writes_every_figure(tmp_path):
    figures, _ = run_bench(
        tmp_path, "guardrails", ["--rounds", 10, "--series", 1],
        drop=lambda k: k.startswith("BENCH_GUARDRAIL_"),
    )  # fmt: skip
    assert all(figures[name] > 0 for name in figures)


def test_standing_bench_prints_and_writes_every_figure(tmp_path):
    figures, _ = run_bench(
        tmp_path, "standing", ["--rounds", 10, "--series", 1],
        drop=lambda k: k.startswith("BENCH_STANDING_"),
    )  # fmt: skip
    assert all(figures[name] > 0 for name in figures)


def test_log_only_bench_prints_and_writes_every_figure(tmp_path):
    figures, _ = run_bench(
        tmp_path, "log_only", ["--rounds", 10, "--series", 1],
        drop=lambda k: k.startswith("BENCH_LOG_ONLY_"),
    )  # fmt: skip
    assert all(figures[name] > 0 for name in figures)
