"""`make bench`: figures measured in one run, each with a baseline from the same run.

Prints one ``name: value`` line per figure and writes them all, as one JSON object, to
``var/bench.json`` (or ``$BENCH_JSON``).
"""

import importlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.bench.common import Figures, pct

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "200"))
FIGURES = Figures()
emit = FIGURES.emit


def broker_round_trips(url: str, options: dict, rounds: int = ROUNDS) -> list[float] | None:
    """Publish a ping, wait for the echo process's pong: cross-process latency in ms."""
    from kombu import Connection

    from tests.bench.broker_echo import transport_for

    echo = subprocess.Popen(
        [sys.executable, "-m", "tests.bench.broker_echo", url, json.dumps(options), str(rounds)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        if echo.stdout.readline().strip() != "ready":
            return None
        times = []
        with Connection(url, transport=transport_for(url), transport_options=options) as conn:
            ping, pong = conn.SimpleQueue("bench-ping"), conn.SimpleQueue("bench-pong")
            for i in range(rounds):
                started = time.perf_counter()
                ping.put({"i": i})
                message = pong.get(block=True, timeout=30)
                message.ack()
                times.append((time.perf_counter() - started) * 1000)
        return times
    except Exception as exc:  # a broker that is not there is reported, not fatal
        print(f"# {url}: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        return None
    finally:
        echo.kill()
        echo.wait()


def bench_brokers() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp, "fs")
        for sub in ("out", "processed", "control"):
            (folder / sub).mkdir(parents=True)
        candidates = {
            "filesystem": (
                "filesystem://localhost/",
                {
                    "data_folder_in": str(folder / "out"),
                    "data_folder_out": str(folder / "out"),
                    "processed_folder": str(folder / "processed"),
                    "control_folder": str(folder / "control"),
                    "store_processed": False,
                    "polling_interval": 0.05,
                },
            ),
            # kombu hands SQLAlchemy's transport options to create_engine(), so its polling
            # interval cannot be tuned: it polls at kombu's default of once a second.
            "sqla_sqlite": (f"sqla+sqlite:///{tmp}/broker.sqlite3", {}),
            "redis": (os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/15"), {}),
        }
        # A second per trip (its polling): 8 SQLAlchemy round trips say as much as 200.
        results = {
            name: broker_round_trips(url, opts, rounds=8 if name == "sqla_sqlite" else ROUNDS)
            for name, (url, opts) in candidates.items()
        }
    for name, times in results.items():
        if times:
            emit(f"broker_{name}_rtt_p50_ms", round(statistics.median(times), 2))
            emit(f"broker_{name}_rtt_p99_ms", round(pct(times, 0.99), 2))
    baseline = results.get("redis")
    if baseline:
        for name in ("filesystem", "sqla_sqlite"):
            if results.get(name):
                ratio = statistics.median(results[name]) / statistics.median(baseline)
                emit(f"broker_{name}_vs_redis_p50_ratio", round(ratio, 2))


def bench_api() -> None:
    """Agent-token authentication cost: /agents/me/ against /healthz (no auth, no DB)."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    tmp = tempfile.mkdtemp()
    os.environ["AUTONOMY_DATA_DIR"] = tmp
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.core.management import call_command
    from django.test import Client

    call_command("migrate", verbosity=0)
    from agents import services
    from agents.models import Agent
    from demo import registry

    registry.seed(agents=1000)
    agent = Agent.objects.first()
    _, token = services.credential_issue(agent=agent)
    client = Client(HTTP_HOST="127.0.0.1")

    def rate(path: str, **headers) -> float:
        n, started = 300, time.perf_counter()
        for _ in range(n):
            assert client.get(path, **headers).status_code == 200
        return n / (time.perf_counter() - started)

    base = rate("/healthz")
    me = rate("/api/v1/agents/me/", HTTP_AUTHORIZATION=f"Bearer {token}")
    emit("healthz_requests_per_s", round(base))
    emit("agent_me_requests_per_s", round(me))
    emit("agent_me_vs_healthz_ratio", round(me / base, 3))


def bench_gate() -> bool:
    """The action gate (``tests.bench.gate``) in a process of its own: it needs its own
    throwaway database (PostgreSQL when DATABASE_URL is set) and Django settings made before
    setup, while ``bench_api`` below fixes this process on a SQLite one."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp, "gate.json")
        done = subprocess.run(
            [sys.executable, "-m", "tests.bench.gate", "--json", str(out)],
            cwd=ROOT,
            env=dict(os.environ),
        )
        if done.returncode != 0 or not out.exists():
            print(f"# gate bench failed (exit {done.returncode})", file=sys.stderr)
            return False
        FIGURES.update(json.loads(out.read_text()))  # already printed by the child
    return True


def bench_approvals() -> bool:
    """Approvals (``tests.bench.approvals``) in a process of its own, with a real worker."""
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.approvals"],
        cwd=ROOT,
        env=dict(os.environ),
        capture_output=True,
        text=True,
    )
    for line in done.stdout.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            emit(name, float(value) if "." in value else int(value))
    if done.returncode != 0:
        print(f"# approvals bench failed (exit {done.returncode}):\n{done.stderr[-3000:]}",
              file=sys.stderr)  # fmt: skip
        return False
    return True


def bench_module(module: str) -> bool:
    """Run ``tests.bench.<module>`` in a process of its own (its own throwaway database and
    workers), take its ``name: value`` lines and check every name it requires is there. Its
    ``# ...`` notes (stderr) pass through."""
    required = importlib.import_module(f"tests.bench.{module}").REQUIRED
    done = subprocess.run(
        [sys.executable, "-m", f"tests.bench.{module}"],
        cwd=ROOT,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        text=True,
    )
    for line in done.stdout.splitlines():
        name, sep, value = line.partition(": ")
        if sep:
            emit(name, float(value) if "." in value else int(value))
    missing = [name for name in required if name not in FIGURES]
    if done.returncode != 0 or missing:
        print(f"# {module} bench failed (exit {done.returncode}, missing {missing})",
              file=sys.stderr)  # fmt: skip
        return False
    return True


# Each in a process of its own: the engine's cost per step against a raw Celery chain, runs
# per minute and queries per step (real workers); kill committed → the agent's next request
# refused; one shared-memory read through the gate against the gate alone; server-sent
# events' lag at 200 events/s with nothing lost; the dashboard at
# 1,000,000 actions against 10,000 in the same run; the analytics page with 100,000 runs
# against 10 (rollups seeded in bulk); the gate's requests/s with two web
# processes against one; on PostgreSQL, the highest end-to-end rate of allowed actions in
# production mode (``load``); a decision with 20 content rules on a 5 KB e-mail body against
# the same decision without them (``guardrails``); a decision with 1,000 standing approvals
# against the same decision without them (``standing``); the grouped inbox with 10,000 waiting
# requests and one group of 1,000 decided in one call (``inbox_groups``); the approval load's
# figures at 100,000 requests in a day against 10,000 (``approval_load``); a decision with a
# running log-only trial against the same decision without one (``log_only``).
MODULES = [
    "workflows", "intervention", "memory", "activity", "dashboard", "analytics", "gate_scale",
    "load", "guardrails", "standing", "inbox_groups", "approval_load", "log_only",
]  # fmt: skip


def write_json() -> Path:
    path = Path(os.environ.get("BENCH_JSON") or ROOT / "var" / "bench.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")
    return path


def timed(name: str, part):
    """Run one part; its wall time goes to stderr (the issue bounds the whole run)."""
    started = time.monotonic()
    try:
        return part()
    finally:
        took = time.monotonic() - started
        print(f"# {name} took {took:.0f} s", file=sys.stderr, flush=True)


if __name__ == "__main__":
    began = time.monotonic()
    timed("brokers", bench_brokers)
    gate_ok = timed("gate", bench_gate)
    approvals_ok = timed("approvals", bench_approvals)
    modules_ok = [timed(module, lambda m=module: bench_module(m)) for module in MODULES]
    timed("api", bench_api)
    print(f"# figures written to {write_json()}", file=sys.stderr, flush=True)
    print(f"# make bench took {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    ok = [gate_ok, approvals_ok, *modules_ok]
    sys.exit(0 if all(ok) else 1)
