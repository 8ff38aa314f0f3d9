"""Load in production mode on PostgreSQL, as issue 21 measured it: gunicorn web processes, a
Celery worker, and a generator of agents' requests over HTTP. (``gate_scale_2proc``, the
gate alone with one web process against two, is ``tests.bench.gate_scale``.)

    python -m tests.bench.load        (sizes from BENCH_LOAD_* below)

- ``actions_per_s_e2e_pg``: two gunicorn processes and one Celery worker (prefork, ``-c 2``)
  on Redis. An open-loop generator offers rising rates (``BENCH_LOAD_RATES``), each for
  ``BENCH_LOAD_STEP_S`` seconds. The figure is the highest rate at which every request was
  accepted, the POST's p99 stayed under 100 ms, and execution kept up: every accepted action
  had executed within ``BENCH_LOAD_DRAIN_S`` seconds of the step's end. The p99 and the lag
  of each rate are printed as ``#`` lines.

The generator, the web processes, the worker and PostgreSQL share this machine's cores, as
they did when the issue measured them. Nothing is printed on SQLite: the figures are about
PostgreSQL.
"""

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from tests.bench import gate as gate_bench
from tests.bench.common import Figures, pct
from tests.realparts import free_port

ROOT = Path(__file__).resolve().parents[2]
ON_POSTGRES = urlsplit(os.environ.get("DATABASE_URL", "")).scheme in (
    "postgres", "postgresql", "pgsql", "psql",
)  # fmt: skip
REQUIRED = ("actions_per_s_e2e_pg",) if ON_POSTGRES else ()

AGENTS = int(os.environ.get("BENCH_LOAD_AGENTS", "200"))
RATES = [int(r) for r in os.environ.get("BENCH_LOAD_RATES", "25,50,75,100,150,200,300").split(",")]
STEP_S = float(os.environ.get("BENCH_LOAD_STEP_S", "6"))
DRAIN_S = float(os.environ.get("BENCH_LOAD_DRAIN_S", "5"))
P99_LIMIT_MS = 100.0
OPERATION = "erp.post-invoice"


FIGURES = Figures()
emit = FIGURES.emit


def note(text: str) -> None:
    print(f"# {text}", file=sys.stderr, flush=True)


# --- the throwaway database, the production environment, the registry -----------------------


def production_env(database_url: str, data_dir: str, broker: str, queue: str) -> dict:
    """What a production deployment sets (DJANGO_ENV=production refuses to start without
    its secrets), on plain HTTP behind no proxy."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(48),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "AUTONOMY_SECRETS_KEY": secrets.token_urlsafe(32),
        "AUTONOMY_AUDIT_KEY": secrets.token_urlsafe(32),
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url,
        "AUTONOMY_DATA_DIR": data_dir,
        "CELERY_BROKER_URL": broker,
        "CELERY_TASK_ALWAYS_EAGER": "false",
        "CELERY_TASK_DEFAULT_QUEUE": queue,
        "AUTONOMY_HEARTBEAT_SECONDS": "0",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
    }


SEED = """
import json, sys
from agents import services as agent_services
from autonomy import grants
from autonomy.models import Connector, ConnectorKind, DataClass, Effect, Operation
from autonomy.policy import services as policy_services
from django.contrib.auth import get_user_model
from tests.factories import BusinessUnitFactory, make_role
from tests.autonomy.gate_fixtures import INVOICE_SCHEMA, BASELINE

owner = get_user_model().objects.create(username="bench-owner", is_staff=True)
unit = BusinessUnitFactory(slug="finance", name="Finance")
role = make_role("invoice-processor")
erp = Connector.objects.create(slug="erp", name="ERP", kind=ConnectorKind.ERP)
post = Operation.objects.create(
    connector=erp, slug="post-invoice", name="Post invoice", effect=Effect.WRITE,
    sensitivity=1, data_class=DataClass.INTERNAL, financial=True,
    params_schema=INVOICE_SCHEMA, amount_param="amount",
)
grants.grant(target=post, to=role)
policy_services.registry_changed()
policy_services.policy_save(name="baseline", text=BASELINE, enabled=True, by=owner)
tokens = []
for i in range(int(sys.argv[1])):
    agent = agent_services.agent_register(
        approved=True,
        name=f"Load {i}", slug=f"load-{i}", owner=owner, business_unit=unit, role=role,
        risk_tier=1,
    )
    tokens.append(agent_services.credential_issue(agent=agent)[1])
print(json.dumps(tokens))
"""


def manage(env: dict, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, input=stdin,
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"manage.py {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def seed(env: dict) -> list[str]:
    manage(env, "migrate", "--noinput", "-v", "0")
    script = Path(env["AUTONOMY_DATA_DIR"], "seed.py")
    script.write_text(SEED)
    done = subprocess.run(
        [sys.executable, "-c",
         "import django, runpy, sys; django.setup(); sys.argv = [sys.argv[1], sys.argv[2]];"
         " runpy.run_path(sys.argv[0], run_name='__main__')", str(script), str(AGENTS)],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        raise SystemExit(f"seeding failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- processes ------------------------------------------------------------------------------


def start_web(env: dict, workers: int, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    with open(log, "a") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "-w", str(workers),
             "-b", f"127.0.0.1:{port}", "--backlog", "2048", "--timeout", "60"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(f"gunicorn died:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.1)
    # Each worker process imports Django on its first request: warm every one of them.
    asyncio.run(closed_loop(port, [], workers * 8, 1.0))
    return proc, port


def start_worker(env: dict, log: Path) -> subprocess.Popen:
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork", "-c", "2",
             "-Q", env["CELERY_TASK_DEFAULT_QUEUE"], "--without-gossip", "--without-mingle",
             "--without-heartbeat", "--loglevel=WARNING"],
            cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    time.sleep(3)
    if proc.poll() is not None:
        raise SystemExit(f"celery worker died:\n{log.read_text()[-3000:]}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# --- the generator --------------------------------------------------------------------------


def request_bytes(token: str, n: int) -> bytes:
    body = json.dumps(
        {"operation": OPERATION, "params": {"invoice_id": f"INV-{n}", "amount": 10}}
    ).encode()
    head = (
        "POST /api/v1/actions/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def post(port: int, payload: bytes) -> tuple[int, float]:
    """One request on a connection of its own (gunicorn's sync workers close after each):
    its status and its latency in ms, connection included. 0: no answer."""
    started = time.perf_counter()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        await writer.drain()
        status_line = await reader.readline()
        await reader.read()
        writer.close()
        status = int(status_line.split()[1])
    except (OSError, ValueError, IndexError):
        status = 0
    return status, (time.perf_counter() - started) * 1000


async def closed_loop(port: int, tokens: list[str], clients: int, seconds: float) -> int:
    """``clients`` connections, each sending its next request when the last is answered;
    the number of accepted (201) requests in ``seconds``."""
    tokens = tokens or ["aos_warmup"]
    deadline = time.monotonic() + seconds
    accepted = 0

    async def client(c: int) -> None:
        nonlocal accepted
        n = c
        while time.monotonic() < deadline:
            status, _ = await post(port, request_bytes(tokens[n % len(tokens)], n))
            accepted += status == 201
            n += clients

    await asyncio.gather(*(client(c) for c in range(clients)))
    return accepted


async def open_loop(port: int, tokens: list[str], rate: int, seconds: float, first: int):
    """Requests at ``rate`` a second whatever the answers (a real fleet does not wait):
    their statuses and latencies."""
    results: list[tuple[int, float]] = []
    tasks = []
    began = time.monotonic()
    total = int(rate * seconds)
    for i in range(total):
        await asyncio.sleep(max(0.0, began + i / rate - time.monotonic()))
        n = first + i
        payload = request_bytes(tokens[n % len(tokens)], n)
        tasks.append(asyncio.create_task(post(port, payload)))
    results = await asyncio.gather(*tasks)
    return results


# --- the two figures ------------------------------------------------------------------------


def executed_since(env: dict, since: float) -> tuple[int, int]:
    """(accepted, executed) actions created after ``since`` (a Unix time)."""
    import psycopg

    url = urlsplit(env["DATABASE_URL"])
    with psycopg.connect(urlunsplit(url._replace(scheme="postgresql")), autocommit=True) as c:
        row = c.execute(
            "SELECT count(*), count(*) FILTER (WHERE status IN ('succeeded', 'failed'))"
            " FROM autonomy_actionrequest WHERE created_at >= to_timestamp(%s)",
            [since],
        ).fetchone()
    return row[0], row[1]


def bench_e2e(env: dict, tokens: list[str], log: Path) -> None:
    worker = start_worker(env, log.with_name("worker.log"))
    web, port = start_web(env, 2, log)
    best, n = 0, 0
    try:
        # Warm the path first (each process compiles the policies and fills its caches on
        # its first actions): not counted.
        warm = asyncio.run(open_loop(port, tokens, 10, 2, 0))
        n = len(warm)
        for rate in RATES:
            since = time.time()
            results = asyncio.run(open_loop(port, tokens, rate, STEP_S, n))
            n += len(results)
            sent_all = time.monotonic()
            accepted = sum(1 for status, _ in results if status == 201)
            p99 = pct([ms for _, ms in results], 0.99)
            while True:
                created, executed = executed_since(env, since)
                if executed >= accepted or time.monotonic() - sent_all > DRAIN_S:
                    break
                time.sleep(0.1)
            lag = time.monotonic() - sent_all
            kept_up = executed >= accepted
            note(f"{rate}/s: {accepted}/{len(results)} accepted, POST p99 {p99:.1f} ms, "
                 f"{executed}/{accepted} executed {lag:.1f} s after the last request")  # fmt: skip
            if accepted == len(results) and p99 < P99_LIMIT_MS and kept_up:
                best = rate
            else:
                break
            # The next rate starts from an empty backlog.
            while executed_since(env, since)[1] < accepted and time.monotonic() - sent_all < 60:
                time.sleep(0.2)
    finally:
        stop(web)
        stop(worker)
    emit("actions_per_s_e2e_pg", best)


def main() -> int:
    """Prints the figures; with ``--json PATH`` also writes them there."""
    if not ON_POSTGRES:
        note("load bench: DATABASE_URL names no PostgreSQL server; nothing measured")
        return 0
    url = os.environ["DATABASE_URL"]
    name = f"autonomy_loadbench_{os.getpid()}"
    gate_bench.SERVER["url"] = url
    gate_bench.create_postgres_database(url, name)
    database_url = urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    redis = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            log = Path(tmp, "web.log")
            queue = f"bench-load-{os.getpid()}"
            env = production_env(database_url, tmp, redis, queue)
            tokens = seed(env)
            bench_e2e(env, tokens, log)
    finally:
        gate_bench.drop_postgres_databases()
    if "--json" in sys.argv:
        Path(sys.argv[sys.argv.index("--json") + 1]).write_text(json.dumps(FIGURES))
    return 0


if __name__ == "__main__":
    sys.exit(main())
