"""How the gate scales with web processes: ``gate_scale_2proc``.

    python -m tests.bench.gate_scale [--agents 16 --clients 12 --seconds 6 --pairs 3]
                                     [--json PATH]

(each also from ``BENCH_GATE_SCALE_<NAME>``). On a throwaway database (PostgreSQL when
``DATABASE_URL`` names one, as the issue measures it; SQLite otherwise, where writers share
one lock and the figure says little), with the gate bench's registry
(``tests.bench.gate.build_world``) and ``--agents`` agents of the measured role, each with its
own token and lifted limits (one agent's requests queue on its own usage lock):

- two gunicorn servers of the project, one with one sync worker and one with two, DEBUG off,
  the Celery broker kombu's in-process ``memory://`` (the publish is made, execution happens
  elsewhere: nothing executes);
- a sealer in this process, sealing the audit trail every second as Celery beat would;
- closed-loop load: ``--clients`` threads, each with a keep-alive connection and agent,
  POSTing allowed actions for ``--seconds``, on the one-process server and then the
  two-process one, ``--pairs`` times. ``gate_scale_2proc`` is the median over the pairs of
  accepted requests/s with two processes divided by one; ``gate_rps_1proc`` and
  ``gate_rps_2proc`` are the medians of each.

The issue's goal is 1.7 or more on 2 cores: appends that serialise every writer on one row
(the audit head, before sealing) cap it near 1.
"""

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from tests.bench import gate as gate_bench
from tests.bench.common import Figures
from tests.realparts import free_port

ROOT = Path(__file__).resolve().parents[2]
REQUIRED = ("gate_scale_2proc",)
FIGURES = Figures()
emit = FIGURES.emit


@dataclass
class Sizes:
    agents: int = 16
    clients: int = 12
    seconds: int = 6
    pairs: int = 3


def tokens_for(world, count: int) -> list[str]:
    """``count`` agents of the measured agent's role, limits lifted, a token each."""
    from agents import services as agent_services
    from agents.models import Agent

    measured = Agent.objects.select_related("role", "business_unit", "owner").get(pk=world.agent_pk)
    tokens = [world.token]
    for n in range(count - 1):
        agent = agent_services.agent_register(
            approved=True,
            name=f"AP bot {n}",
            slug=f"ap-bot-{n}",
            owner=measured.owner,
            business_unit=measured.business_unit,
            role=measured.role,
            risk_tier=1,
        )
        Agent.objects.filter(pk=agent.pk).update(
            max_actions_per_minute=10_000_000, max_daily_spend=Decimal("999999999999.00")
        )
        tokens.append(agent_services.credential_issue(agent=agent)[1])
    return tokens


def start_server(workers: int, log: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    env = {**os.environ, "ALLOWED_HOSTS": "127.0.0.1", "CELERY_BROKER_URL": "memory://localhost/"}
    command = [
        sys.executable, "-m", "gunicorn", "config.wsgi", "--workers", str(workers),
        "--bind", f"127.0.0.1:{port}", "--worker-class", "sync", "--log-level", "warning",
    ]  # fmt: skip
    with log.open("w") as out:
        proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return proc, port
        except OSError:
            if proc.poll() is not None:
                raise SystemExit(
                    f"gunicorn -w {workers} exited: {log.read_text()[-2000:]}"
                ) from None
            time.sleep(0.2)
    raise SystemExit(f"gunicorn -w {workers} did not listen within 60 s")


def load(port: int, tokens: list[str], clients: int, seconds: float) -> float:
    """Accepted (201, allowed) requests per second, ``clients`` closed-loop connections."""
    stop = time.monotonic() + seconds
    counts, errors = [0] * clients, []

    def client(n: int) -> None:
        token = tokens[n % len(tokens)]
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        sent = 0
        try:
            while time.monotonic() < stop:
                sent += 1
                body = json.dumps(
                    {
                        "operation": gate_bench.MEASURED_OPERATION,
                        "params": {
                            "invoice_id": f"INV-{port}-{n}-{sent}",
                            "amount": gate_bench.MEASURED_AMOUNT,
                        },
                        "reason": "monthly close",
                    }
                )
                connection.request("POST", "/api/v1/actions/", body=body, headers=headers)
                response = connection.getresponse()
                answer = response.read()
                if response.status != 201 or json.loads(answer)["decision"] != "allow":
                    errors.append(f"{response.status}: {answer[:300]!r}")
                    return
                counts[n] += 1
        except Exception as exc:  # surfaced below
            errors.append(repr(exc))
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"the gate refused or failed: {errors[0]}")
    return sum(counts) / (time.monotonic() - started)


def sealer(stop: threading.Event) -> None:
    from django.db import connection

    from autonomy import audit

    try:
        while not stop.wait(1.0):
            audit.seal(wait=False)
    finally:
        connection.close()


def bench(sizes: Sizes, tmp: str) -> None:
    from django.core.management import call_command
    from django.db import connection, connections

    from autonomy import audit

    call_command("migrate", verbosity=0)
    world = gate_bench.build_world(
        random.Random(20261207), gate_bench.Sizes(agents_large=sizes.agents)
    )
    tokens = tokens_for(world, sizes.agents)
    gate_bench.save_policies(gate_bench.core_policies(world, str(world.agent_pk)))
    gate_bench.note(
        f"gate scale bench: {connection.vendor}, {sizes.agents} agents, {sizes.clients} "
        f"clients, {sizes.seconds} s per block, {sizes.pairs} pairs"
    )
    connections.close_all()
    servers = {w: start_server(w, Path(tmp, f"gunicorn-{w}.log")) for w in (1, 2)}
    stop = threading.Event()
    sealing = threading.Thread(target=sealer, args=(stop,))
    sealing.start()
    try:
        for workers in (1, 2):  # warm: imports, policy compile, caches, in every worker
            load(servers[workers][1], tokens, sizes.clients, min(2, sizes.seconds))
        rates: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(sizes.pairs):
            for workers in (1, 2):
                rates[workers].append(
                    load(servers[workers][1], tokens, sizes.clients, sizes.seconds)
                )
    finally:
        stop.set()
        sealing.join()
        for proc, _port in servers.values():
            proc.send_signal(signal.SIGTERM)
        for proc, _port in servers.values():
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    ratios = [two / one for one, two in zip(rates[1], rates[2], strict=True)]
    gate_bench.note("rps with 1 process: " + ", ".join(f"{r:.1f}" for r in rates[1]))
    gate_bench.note("rps with 2 processes: " + ", ".join(f"{r:.1f}" for r in rates[2]))
    emit("gate_rps_1proc", round(statistics.median(rates[1]), 1))
    emit("gate_rps_2proc", round(statistics.median(rates[2]), 1))
    emit("gate_scale_2proc", round(statistics.median(ratios), 3))
    audit.seal()
    report = audit.verify_chain()
    gate_bench.note(f"audit chain after the run: ok={report.ok}, {report.checked} records")
    if not report.ok:
        raise SystemExit(f"the audit chain does not verify: {report.problem}")


def parse_args(argv) -> tuple[Sizes, str | None]:
    defaults = Sizes()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in vars(defaults):
        env = os.environ.get(f"BENCH_GATE_SCALE_{name.upper()}")
        default = int(env) if env else getattr(defaults, name)
        parser.add_argument(f"--{name}", type=int, default=default)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    return Sizes(**{name: getattr(args, name) for name in vars(defaults)}), args.json


def main(argv=None) -> int:
    sizes, json_path = parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="autonomy-gate-scale-bench-")
    try:
        gate_bench.configure(tmp)
        import django

        django.setup()
        bench(sizes, tmp)
    finally:
        if gate_bench.SERVER["created"]:
            from django.db import connections

            connections.close_all()
            gate_bench.drop_postgres_databases()
        shutil.rmtree(tmp, ignore_errors=True)
    if json_path:
        Path(json_path).write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
