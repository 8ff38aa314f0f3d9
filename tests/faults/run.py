"""The fault suite (``make faults``; issue 21): the portal in production mode on a PostgreSQL
and a Redis of its own, real Celery workers and beat, simulated agents driving actions,
approvals and workflow runs through the API, while workers are SIGKILLed, the broker is
restarted and database connections are dropped. Then it checks that nothing accepted was
lost, that no side effect happened twice (counted at the connector's system), that the
audit log verifies and that the counts reconcile, and prints::

    accepted_actions: N
    completed_actions: N
    lost_actions: N
    duplicated_side_effects: N
    faults_injected: N
    recovery_s_max: N

It exits non-zero when any check fails. ``python -m tests.faults.run --help`` for the size.
"""

import argparse
import json
import os
import queue
import random
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from tests.faults.services import OwnPostgres, OwnRedis
from tests.realparts import ROOT, free_port

DATABASE = "faults"
TERMINAL = {"succeeded", "failed", "denied", "cancelled"}
RECOVERY_GOAL_S = 10.0


def say(line: str) -> None:
    print(f"[faults {time.strftime('%H:%M:%S')}] {line}", flush=True)


# --- the connector's system: where side effects are counted ---------------------------------


class CountingSystem:
    """A small HTTP system the actions' connector calls. It honours ``Idempotency-Key`` as a
    real system does (a repeated key answers the first answer again), and counts each side
    effect it performs by the business reference in the body (``ref``): one ref performed
    twice is a duplicated side effect, whatever the keys."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.answers: dict[str, bytes] = {}
        self.effects: Counter = Counter()
        self.replays = 0
        system = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                key = self.headers.get("Idempotency-Key") or uuid.uuid4().hex
                with system.lock:
                    answer = system.answers.get(key)
                    if answer is None:
                        ref = (json.loads(body or b"{}") or {}).get("ref", "")
                        system.effects[ref] += 1
                        answer = json.dumps({"ok": True, "ref": ref}).encode()
                        system.answers[key] = answer
                    else:
                        system.replays += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def duplicates(self) -> int:
        with self.lock:
            return sum(count - 1 for count in self.effects.values() if count > 1)


# --- seeding, in this process, through the services -----------------------------------------

PARAMS_SCHEMA = {
    "type": "object",
    "properties": {"ref": {"type": "string"}, "amount": {"type": "number", "minimum": 0}},
    "required": ["ref", "amount"],
    "additionalProperties": False,
}
POLICIES = {
    "baseline": 'permit (principal, action == Action::"invoke", resource);',
    "payments-need-a-person": (
        '@approval("required")\npermit (principal, action, resource == Operation::"sys.pay");'
    ),
}
APPROVER_PASSWORD = secrets.token_urlsafe(16)


def seed(*, agents: int, system_url: str) -> list[str]:
    """Agents with tokens, a connector to the counting system, policies, a workflow template
    and an approver. Returns the agents' tokens."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from agents import services as agent_services
    from agents.models import BusinessUnit
    from agents.portal_roles import PortalRole, group_name
    from autonomy import grants
    from autonomy.models import Connector, ConnectorKind, DataClass, Effect, Operation
    from autonomy.policy import services as policy_services
    from workflows import authoring

    users = get_user_model()
    officer = users.objects.create_user("fault-officer", is_staff=True, is_superuser=True)
    approver = users.objects.create_user(
        "fault-approver", password=APPROVER_PASSWORD, is_staff=True
    )
    approver.groups.add(Group.objects.get_or_create(name=group_name(PortalRole.APPROVER))[0])
    unit = BusinessUnit.objects.create(
        slug="faults", name="Faults", approval_threshold=99, deny_threshold=100
    )
    role = agent_services.role_create(name="Fault clerk", slug="fault-clerk")
    connector = Connector.objects.create(
        slug="sys", name="System", kind=ConnectorKind.HTTP,
        config={"base_url": system_url, "retries": 2, "timeout_seconds": 5},
    )  # fmt: skip
    for slug in ("post", "pay"):
        operation = Operation.objects.create(
            connector=connector, slug=slug, name=slug.title(), effect=Effect.WRITE,
            sensitivity=1, data_class=DataClass.INTERNAL, params_schema=PARAMS_SCHEMA,
        )  # fmt: skip
        grants.grant(target=operation, to=role)
    policy_services.registry_changed()
    for name, text in POLICIES.items():
        policy_services.policy_save(name=name, text=text, enabled=True, by=officer)
    step = {"assignee_role": "fault-clerk", "operation": "sys.post"}
    template = authoring.template_from_dict(data={
        "key": "fault-run", "name": "Fault run", "steps": [
            {"key": "a", **step, "input_map": {"ref": "$.ref_a", "amount": "$.amount"}},
            {"key": "b", **step, "depends_on": ["a"],
             "input_map": {"ref": "$.ref_b", "amount": "$.amount"}},
        ],
    })  # fmt: skip
    authoring.template_publish(template=template)
    tokens = []
    for n in range(agents):
        agent = agent_services.agent_register(
            approved=True,
            name=f"Fault agent {n}", slug=f"fault-{n}", owner=officer, business_unit=unit,
            role=role, risk_tier=1,
        )  # fmt: skip
        tokens.append(agent_services.credential_issue(agent=agent)[1])
    return tokens


# --- the processes --------------------------------------------------------------------------


class Processes:
    """The portal (gunicorn), the Celery workers and beat, each in its own session so that a
    kill takes the whole process group."""

    def __init__(self, workdir: Path, env: dict, *, workers: int, concurrency: int) -> None:
        self.workdir, self.env = workdir, env
        self.web_port = free_port()
        self.web: subprocess.Popen | None = None
        self.beat: subprocess.Popen | None = None
        self.workers: list[subprocess.Popen | None] = [None] * workers
        self.concurrency = concurrency
        self.generation = 0
        self.lock = threading.Lock()  # one start or kill of a worker at a time
        self.crashes = 0  # workers that exited on their own, restarted by ``supervise``

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.workdir / f"{name}.log", "a")  # noqa: SIM115 (the child's)
        return subprocess.Popen(
            args, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip

    def start_web(self) -> None:
        gunicorn = shutil.which("gunicorn", path=str(Path(sys.executable).parent))
        if gunicorn:
            args = [gunicorn, "config.wsgi", "-w", "2", "-b", f"127.0.0.1:{self.web_port}",
                    "--timeout", "60", "--graceful-timeout", "5"]  # fmt: skip
        else:
            args = [sys.executable, "manage.py", "runserver", "--noreload", str(self.web_port)]
        self.web = self._spawn("web", args)

    def start_worker(self, n: int) -> float:
        """Start worker ``n``; returns when it is ready (the monotonic time)."""
        self.generation += 1
        name = f"worker{n}"
        log = self.workdir / f"{name}.log"
        seen = log.stat().st_size if log.exists() else 0
        self.workers[n] = self._spawn(name, [
            sys.executable, "-m", "celery", "-A", "config", "worker", "--pool=prefork",
            f"-c{self.concurrency}", f"-n{name}-{self.generation}@%h", "--without-gossip",
            "--without-mingle", "--loglevel=INFO",
        ])  # fmt: skip
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = log.read_bytes()[seen:]
            if b" ready." in text:
                return time.monotonic()
            if self.workers[n].poll() is not None:
                raise RuntimeError(f"{name} died:\n{text.decode(errors='replace')[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"{name} was not ready within 60 s")

    def supervise(self, stop: threading.Event) -> None:
        """Restart a worker that exited on its own, as systemd or Kubernetes would. (Celery
        5.7 with kombu 5.7's Redis transport can die of "Unrecoverable error: AttributeError
        ... 'hostname'" when the broker goes away while it holds unacknowledged messages.)"""
        while not stop.wait(0.5):
            for n, proc in enumerate(self.workers):
                with self.lock:
                    if proc is not None and proc is self.workers[n] and proc.poll() is not None:
                        self.crashes += 1
                        say(f"worker{n} exited by itself ({proc.returncode}); restarting it")
                        self.start_worker(n)

    def restart_worker(self, n: int) -> None:
        with self.lock:
            self.kill_worker(n)
            self.start_worker(n)

    def kill_worker(self, n: int) -> None:
        proc = self.workers[n]
        if proc is not None and proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)

    def start_beat(self) -> None:
        self.beat = self._spawn("beat", [
            sys.executable, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO",
            "-s", str(self.workdir / "beat-schedule"),
        ])  # fmt: skip

    def stop_all(self) -> None:
        for proc in [self.web, self.beat, *self.workers]:
            if proc is not None and proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                    proc.wait(15)
                except (subprocess.TimeoutExpired, ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait(10)


# --- the simulated agents and the approver, over HTTP ---------------------------------------


class Client:
    """Requests as a careful client sends them: the same Idempotency-Key again on a 503, a
    5xx or a dropped connection, until accepted or ``give_up_s`` has passed."""

    def __init__(self, base: str) -> None:
        import httpx

        self.base = base
        self.http = httpx.Client(base_url=base, timeout=30)
        self.statuses: Counter = Counter()
        self.lock = threading.Lock()

    def post(self, path: str, body: dict, *, headers: dict, give_up_s: float = 120) -> dict | None:
        import httpx

        key = str(uuid.uuid4())
        deadline = time.monotonic() + give_up_s
        pause = 0.2
        while time.monotonic() < deadline:
            try:
                response = self.http.post(
                    path, json=body, headers={**headers, "Idempotency-Key": key}
                )
            except httpx.HTTPError:
                self._count("connection_error")
            else:
                self._count(response.status_code)
                if response.status_code < 300:
                    return response.json()
                if response.status_code < 500:
                    raise RuntimeError(f"{path} refused: {response.status_code} {response.text}")
            time.sleep(pause)
            pause = min(pause * 2, 2.0)
        return None

    def _count(self, status) -> None:
        with self.lock:
            self.statuses[status] += 1


class Load:
    """Agents asking for actions (most allowed, some needing a person) and starting two-step
    workflow runs; an approver deciding what waits, through the approvals API."""

    def __init__(self, client: Client, tokens: list[str], *, actions: int, threads: int,
                 rate: float) -> None:  # fmt: skip
        self.client, self.tokens = client, tokens
        self.target, self.threads, self.rate = actions, threads, rate
        self.accepted: list[str] = []  # action ids the API acknowledged
        self.runs: list[str] = []  # run ids the API acknowledged
        self.unanswered = 0  # requests given up on (never acknowledged)
        self.lock = threading.Lock()
        self.done = threading.Event()

    def jobs(self):
        """(kind, agent index) for about ``target`` actions: a run makes two."""
        rng = random.Random(21)
        made = 0
        while made < self.target:
            roll = rng.random()
            kind = "run" if roll < 0.1 else "pay" if roll < 0.2 else "post"
            made += 2 if kind == "run" else 1
            yield kind, made % len(self.tokens)

    def drive(self) -> None:
        work: queue.Queue = queue.Queue(maxsize=self.threads * 2)
        threads = [threading.Thread(target=self._agent, args=(work,), daemon=True)
                   for _ in range(self.threads)]  # fmt: skip
        for thread in threads:
            thread.start()
        interval = 1.0 / self.rate if self.rate else 0
        started = time.monotonic()
        for n, job in enumerate(self.jobs()):
            if interval:  # open loop at ``rate`` jobs a second
                time.sleep(max(0.0, started + n * interval - time.monotonic()))
            work.put(job)
        for _ in threads:
            work.put(None)
        for thread in threads:
            thread.join()
        self.done.set()

    def _agent(self, work: queue.Queue) -> None:
        while (job := work.get()) is not None:
            kind, index = job
            auth = {"Authorization": f"Bearer {self.tokens[index]}"}
            ref = uuid.uuid4().hex
            amount = random.randint(1, 50)
            if kind == "run":
                body = {
                    "template": "fault-run",
                    "context": {"ref_a": ref + "-a", "ref_b": ref + "-b", "amount": amount},
                }
                answer = self.client.post("/api/v1/runs/", body, headers=auth)
            else:
                body = {"operation": f"sys.{kind}", "params": {"ref": ref, "amount": amount},
                        "reason": "fault suite"}  # fmt: skip
                answer = self.client.post("/api/v1/actions/", body, headers=auth)
            with self.lock:
                if answer is None:
                    self.unanswered += 1
                elif kind == "run":
                    self.runs.append(answer["id"])
                else:
                    self.accepted.append(answer["id"])


class Approver:
    """A person with a portal session who approves what waits, through the approvals API."""

    def __init__(self, base: str, load: Load) -> None:
        import httpx

        self.base, self.load = base, load
        self.http = httpx.Client(base_url=base, timeout=30, follow_redirects=False)
        self.csrf = secrets.token_hex(16)
        self.cookies = f"csrftoken={self.csrf}"
        self.decided = 0
        self.errors: Counter = Counter()

    def login(self) -> None:
        # The session cookie is Secure in production; this client keeps it by hand.
        response = self.http.post(
            "/admin/login/",
            data={"username": "fault-approver", "password": APPROVER_PASSWORD,
                  "csrfmiddlewaretoken": self.csrf, "next": "/admin/"},
            headers={"Cookie": self.cookies},
        )  # fmt: skip
        session = response.cookies.get("sessionid")
        if response.status_code != 302 or not session:
            raise RuntimeError(f"the approver could not sign in: {response.status_code}")
        self.cookies += f"; sessionid={session}"

    def run(self, stop: threading.Event) -> None:
        import httpx

        headers = {"Cookie": self.cookies, "X-CSRFToken": self.csrf}
        while not stop.is_set():
            try:
                page = self.http.get("/api/v1/approvals/?status=pending", headers=headers)
                if page.status_code != 200:
                    self.errors[page.status_code] += 1
                    time.sleep(0.5)
                    continue
                waiting = page.json().get("results", [])
                for request in waiting:
                    answer = self.http.post(
                        f"/api/v1/approvals/{request['id']}/decide/",
                        json={"verdict": "approve", "comment": "fault suite"}, headers=headers,
                    )  # fmt: skip
                    if answer.status_code == 200:
                        self.decided += 1
                    else:
                        self.errors[answer.status_code] += 1
                if not waiting:
                    time.sleep(0.5)
            except httpx.HTTPError:
                self.errors["connection_error"] += 1
                time.sleep(0.5)


# --- faults ---------------------------------------------------------------------------------


class Faults:
    """Kills workers, restarts the broker and drops database connections at random moments.
    Each fault notes the actions it touched (in flight when it struck, or decided while it
    lasted) and when it cleared, for ``recovery_s_max``."""

    KINDS = ("kill_worker", "restart_broker", "drop_connections")

    def __init__(self, procs: Processes, broker: OwnRedis, db: OwnPostgres, *,
                 every: tuple[float, float], seed: int = 17) -> None:  # fmt: skip
        self.procs, self.broker, self.db = procs, broker, db
        self.every = every
        self.rng = random.Random(seed)
        self.log: list[dict] = []

    def run(self, stop: threading.Event) -> None:
        n = 0
        while not stop.wait(self.rng.uniform(*self.every)):
            kind = self.KINDS[n % len(self.KINDS)]
            n += 1
            try:
                self.inject(kind)
            except Exception as exc:  # noqa: BLE001 (reported, and counted as a failure)
                say(f"fault {kind} could not be injected: {exc!r}")
                self.log.append({"kind": kind, "error": repr(exc)})

    def inject(self, kind: str) -> None:
        from django.utils import timezone

        in_flight = self._in_flight()
        started = timezone.now()
        if kind == "kill_worker":
            n = self.rng.randrange(len(self.procs.workers))
            self.procs.restart_worker(n)
            what = f"SIGKILLed worker{n}, restarted"
        elif kind == "restart_broker":
            self.broker.kill()
            time.sleep(self.rng.uniform(2, 5))
            self.broker.start()
            what = "broker killed and restarted empty"
        else:
            dropped = self.db.drop_connections(DATABASE)
            what = f"dropped {dropped} database sessions"
        cleared = timezone.now()
        self.log.append({"kind": kind, "what": what, "started": started, "cleared": cleared,
                         "in_flight": in_flight})  # fmt: skip
        say(f"fault {len(self.log)}: {what} ({len(in_flight)} actions in flight)")

    @staticmethod
    def _in_flight() -> list[str]:
        from django.db import close_old_connections

        from autonomy.models import ActionRequest

        for attempt in range(10):
            try:
                close_old_connections()
                return [str(pk) for pk in ActionRequest.objects.filter(
                    status__in=["approved", "executing"]).values_list("pk", flat=True)]  # fmt: skip
            except Exception:  # noqa: BLE001 (our own session was dropped: once more)
                from django.db import connection

                connection.close()
                time.sleep(0.2 * (attempt + 1))
        return []


# --- checks ---------------------------------------------------------------------------------


def settle(load: Load, *, timeout: float) -> dict[str, str]:
    """Wait until every action and run is terminal (or ``timeout``); their statuses."""
    from django.db import close_old_connections

    from autonomy.models import ActionRequest
    from workflows.models import Run

    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()
        open_actions = ActionRequest.objects.exclude(status__in=TERMINAL).count()
        open_runs = Run.objects.exclude(status__in=["succeeded", "failed", "cancelled"]).count()
        if (open_actions == 0 and open_runs == 0) or time.monotonic() > deadline:
            break
        time.sleep(1)
    return dict(ActionRequest.objects.values_list("pk", "status"))


def recovery_seconds(faults: Faults) -> float:
    """For each fault, the latest end of an action it touched, after the fault cleared."""
    from autonomy.models import ActionRequest

    worst = 0.0
    for fault in faults.log:
        if "cleared" not in fault:
            continue
        touched = set(fault["in_flight"]) | {
            str(pk) for pk in ActionRequest.objects.filter(
                decided_at__gte=fault["started"], decided_at__lte=fault["cleared"],
                verdict="allow").values_list("pk", flat=True)
        }  # fmt: skip
        finished = ActionRequest.objects.filter(pk__in=touched).values_list("finished_at", "status")
        this = 0.0
        for finished_at, status in finished:
            if finished_at is None or status not in TERMINAL:
                this = float("inf")
                break
            this = max(this, (finished_at - fault["cleared"]).total_seconds())
        fault["recovery_s"] = round(this, 1)
        fault["touched"] = len(touched)
        worst = max(worst, this)
    return worst


def verify_audit() -> tuple[bool, str]:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    try:
        call_command("verify_audit", stdout=out, stderr=out)
    except SystemExit as exc:
        return exc.code in (0, None), out.getvalue()
    except Exception as exc:  # noqa: BLE001 (a failed verification is a result)
        return False, f"{out.getvalue()}{exc!r}"
    return True, out.getvalue()


# --- the whole run --------------------------------------------------------------------------


def production_env(*, workdir: Path, database_url: str, broker_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DJANGO_ENV": "production",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "AUTONOMY_SECRETS_KEY": secrets.token_urlsafe(32),
        "AUTONOMY_AUDIT_KEY": secrets.token_urlsafe(32),
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",
        "DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url,
        "CELERY_TASK_DEFAULT_QUEUE": "autonomy",
        "AUTONOMY_DATA_DIR": str(workdir),
        "PYTHONPATH": str(ROOT),
        # Liveness and sweeps at the pace a fault suite measures in seconds.
        "AUTONOMY_WORKER_BEAT_SECONDS": "1",
        "AUTONOMY_WORKER_LOST_SECONDS": "4",
        "AUTONOMY_ACTION_REDISPATCH_SECONDS": "5",
        "AUTONOMY_ACTIONS_SWEEP_SECONDS": "2",
        "AUTONOMY_WORKFLOW_REDISPATCH_SECONDS": "5",
        "AUTONOMY_WORKFLOW_SWEEP_SECONDS": "2",
        "CONN_MAX_AGE": "60",
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--agents", type=int, default=int(os.environ.get("FAULTS_AGENTS", 1000)))
    parser.add_argument("--actions", type=int,
                        default=int(os.environ.get("FAULTS_ACTIONS", 10_000)))  # fmt: skip
    parser.add_argument(
        "--rate",
        type=float,
        default=float(os.environ.get("FAULTS_RATE", 30)),
        help="requests a second the agents send (open loop)",
    )
    parser.add_argument("--threads", type=int, default=16, help="agents' HTTP threads")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--concurrency", type=int, default=2, help="each worker's -c")
    parser.add_argument("--fault-every", type=float, nargs=2, default=(6.0, 12.0),
                        metavar=("MIN", "MAX"), help="seconds between faults")  # fmt: skip
    parser.add_argument("--settle-timeout", type=float, default=120.0)
    parser.add_argument(
        "--recovery-goal",
        type=float,
        default=RECOVERY_GOAL_S,
        help="seconds within which a fault's actions must be terminal",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="autonomy-faults-"))
    broker, db = OwnRedis(workdir), OwnPostgres(workdir)
    procs = None
    failures: list[str] = []
    try:
        broker.start()
        db.init()
        db.start()
        db.create_database(DATABASE)
        env = production_env(workdir=workdir, database_url=db.url(DATABASE),
                             broker_url=broker.url)  # fmt: skip
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        import logging

        import django

        django.setup()
        logging.getLogger("httpx").setLevel(logging.WARNING)
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
        system = CountingSystem()
        began = time.monotonic()
        tokens = seed(agents=args.agents, system_url=system.url)
        say(f"seeded {len(tokens)} agents in {time.monotonic() - began:.1f}s; {workdir}")
        from django.db import connections

        connections.close_all()

        procs = Processes(workdir, env, workers=args.workers, concurrency=args.concurrency)
        procs.start_web()
        for n in range(args.workers):
            procs.start_worker(n)
        procs.start_beat()
        base = f"http://127.0.0.1:{procs.web_port}"
        _wait_http(base + "/healthz")

        client = Client(base)
        load = Load(client, tokens, actions=args.actions, threads=args.threads, rate=args.rate)
        approver = Approver(base, load)
        approver.login()
        stop = threading.Event()
        faults = Faults(procs, broker, db, every=tuple(args.fault_every))
        helpers = [threading.Thread(target=approver.run, args=(stop,), daemon=True),
                   threading.Thread(target=faults.run, args=(stop,), daemon=True)]  # fmt: skip
        supervising = threading.Event()
        threading.Thread(target=procs.supervise, args=(supervising,), daemon=True).start()
        for thread in helpers:
            thread.start()
        began = time.monotonic()
        load.drive()
        say(f"load sent in {time.monotonic() - began:.1f}s; statuses {dict(client.statuses)}")
        # The faults stop with the load; the approver goes on until everything waits for no one.
        faults_thread = helpers[1]
        stop.set()
        faults_thread.join(120)
        stop.clear()
        approver_thread = threading.Thread(target=approver.run, args=(stop,), daemon=True)
        approver_thread.start()
        statuses = settle(load, timeout=args.settle_timeout)
        stop.set()
        supervising.set()
        say(f"workers that exited by themselves and were restarted: {procs.crashes}")

        failures += _check(load, statuses, system, faults, approver, goal=args.recovery_goal)
    except Exception as exc:  # noqa: BLE001 (reported as the run's failure)
        import traceback

        traceback.print_exc()
        failures.append(f"the suite itself failed: {exc!r}")
    finally:
        if procs is not None:
            procs.stop_all()
        db.stop()
        broker.stop()
        if args.keep or failures:
            say(f"work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    for failure in failures:
        say(f"FAILED: {failure}")
    return 1 if failures else 0


def _wait_http(url: str, timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


def _check(load, statuses, system, faults, approver, *, goal: float) -> list[str]:
    from autonomy.models import ActionRequest
    from workflows.models import Run

    failures = []
    acknowledged = set(load.accepted)
    missing = acknowledged - set(map(str, statuses))
    open_ids = [pk for pk, status in statuses.items() if status not in TERMINAL]
    accepted = len(statuses)
    completed = accepted - len(open_ids)
    lost = len(missing) + len(open_ids)
    duplicates = system.duplicates()
    succeeded_refs = Counter(
        params.get("ref") for params in ActionRequest.objects.filter(
            status="succeeded").values_list("params", flat=True)
    )  # fmt: skip
    unrecorded = [ref for ref in system.effects if ref not in succeeded_refs]
    open_runs = Run.objects.exclude(status__in=["succeeded", "failed", "cancelled"]).count()
    recovery = recovery_seconds(faults)
    audit_ok, audit_out = verify_audit()
    by_status = Counter(statuses.values())
    injected = sum(1 for fault in faults.log if "cleared" in fault)

    say(
        f"actions by status: {dict(by_status)}; runs acknowledged {len(load.runs)}, "
        f"still open {open_runs}; approvals decided {approver.decided} "
        f"(errors {dict(approver.errors)}); requests given up {load.unanswered}; "
        f"system side effects {sum(system.effects.values())}, replayed keys {system.replays}"
    )
    for fault in faults.log:
        say(
            f"  {fault.get('kind')}: {fault.get('what', fault.get('error'))}, "
            f"recovery {fault.get('recovery_s', 'n/a')}"
        )
    say(f"verify_audit: {audit_out.strip()[-300:]}")
    print(f"accepted_actions: {accepted}")
    print(f"completed_actions: {completed}")
    print(f"lost_actions: {lost}")
    print(f"duplicated_side_effects: {duplicates}")
    print(f"faults_injected: {injected}")
    print(f"recovery_s_max: {recovery:.1f}", flush=True)

    if lost:
        failures.append(f"{lost} actions lost ({len(missing)} acknowledged but not recorded, "
                        f"{len(open_ids)} not terminal: {open_ids[:5]})")  # fmt: skip
    if duplicates:
        failures.append(f"{duplicates} side effects happened twice")
    if unrecorded:
        failures.append(f"{len(unrecorded)} side effects with no succeeded action: "
                        f"{unrecorded[:5]}")  # fmt: skip
    if any(count > 1 for count in succeeded_refs.values()):
        failures.append("two succeeded actions for one business reference")
    if open_runs:
        failures.append(f"{open_runs} workflow runs not finished")
    if load.unanswered:
        failures.append(f"{load.unanswered} requests never acknowledged")
    if not audit_ok:
        failures.append("verify_audit failed")
    if recovery > goal:
        failures.append(f"recovery took {recovery:.1f}s (goal {goal:.0f}s)")
    if any("error" in fault for fault in faults.log):
        failures.append("a fault could not be injected")
    return failures


if __name__ == "__main__":
    sys.exit(main())
