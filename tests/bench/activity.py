"""Activity stream benchmark (run by `make bench` in its own process and database).

A threaded WSGI server serves the portal; one client follows ``/activity/stream/`` (server-
sent events) as a signed-in officer while another thread appends actions' decision records
(``audit.append``, one transaction each, as the gate does) at a fixed rate. Each decision's
lag is the time the client received it minus the time its transaction committed.

- stream_lag_p50_ms / stream_lag_p99_ms: that lag, at BENCH_STREAM_RATE (200) events/s
  for BENCH_STREAM_SECONDS (10) s; the stream polls every stream_poll_ms (its floor).
- stream_events_sent / stream_events_received: must be equal (nothing lost).
- stream_write_rate_per_s: the rate the writer actually reached.

A throwaway SQLite database (WAL) of its own, as the embedded default runs.
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.bench import common
from tests.bench.common import pct

REQUIRED = (
    "stream_lag_p50_ms",
    "stream_lag_p99_ms",
    "stream_events_sent",
    "stream_events_received",
)


def emit(figures: dict, name: str, value) -> None:
    figures[name] = value
    print(f"{name}: {value}", flush=True)


def setup_django(data_dir: str) -> None:
    common.setup_django(data_dir)


def serve():
    """The portal on a threaded WSGI server (as ``runserver``), on a free port."""
    from django.core.handlers.wsgi import WSGIHandler
    from django.core.servers.basehttp import ThreadedWSGIServer, WSGIRequestHandler

    class Quiet(WSGIRequestHandler):
        def log_message(self, *args):
            pass

    server = ThreadedWSGIServer(("127.0.0.1", 0), Quiet, allow_reuse_address=False)
    server.set_app(WSGIHandler())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def session_cookie() -> str:
    from django.contrib.auth.models import Group
    from django.test import Client

    from agents.portal_roles import PortalRole, group_name
    from tests.factories import UserFactory

    officer = UserFactory(username="bench-officer", is_staff=True)
    officer.groups.add(Group.objects.get(name=group_name(PortalRole.RISK_OFFICER)))
    client = Client()
    client.force_login(officer)
    return client.cookies["sessionid"].value


def follow(host, port, path, cookie, received: dict, ready: threading.Event, stop):
    """Read the stream line by line (as EventSource does: no buffering to a block size);
    note when each action's decision arrived, by the wall clock."""
    import http.client

    conn = http.client.HTTPConnection(host, port, timeout=60)
    conn.request("GET", path, headers={"Cookie": f"sessionid={cookie}"})
    response = conn.getresponse()
    assert response.status == 200, response.status
    ready.set()
    event = ""
    try:
        while not stop.is_set():
            line = response.readline().decode().rstrip("\n")
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event == "batch":
                now = time.time()
                for item in json.loads(line[5:]):
                    if item["kind"] == "action_decision" and item["action_id"]:
                        received.setdefault(item["action_id"], now)
            elif not line:
                event = ""
    finally:
        conn.close()


def actions_for(agent, operation, total: int) -> list:
    """``total`` decided actions, made up front: the writer then appends their decision
    records at the asked rate, which the gate alone could not keep on a busy 2-core box."""
    from django.utils import timezone

    from autonomy.models import ActionRequest, ActionStatus, Verdict

    now = timezone.now()
    return ActionRequest.objects.bulk_create(
        ActionRequest(
            agent=agent, operation=operation, params={"invoice_id": f"INV-{i}", "amount": 10},
            reason="bench", verdict=Verdict.ALLOW, status=ActionStatus.APPROVED,
            risk_score=i % 100, created_at=now, decided_at=now,
        )
        for i in range(total)
    )  # fmt: skip


def write(actions: list, rate: float, committed: dict) -> float:
    """Append each action's decision record, one transaction each, at ``rate`` per second;
    note each one's commit time."""
    from django.db import connection, transaction

    from autonomy import audit

    started = time.perf_counter()
    for i, action in enumerate(actions):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        with transaction.atomic():
            audit.append(
                kind="action_decision",
                actor="agent-ap-bot",
                agent_id=action.agent_id,
                action_id=action.pk,
                payload={
                    "operation": "erp.post-invoice",
                    "params": action.params,
                    "reason": action.reason,
                    "decision": {"verdict": "allow", "reasons": [], "risk_score": 3},
                },
            )
        committed[str(action.pk)] = time.time()
    elapsed = time.perf_counter() - started
    connection.close()
    return len(actions) / elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument(
        "--rate", type=float, default=float(os.environ.get("BENCH_STREAM_RATE", 200))
    )
    parser.add_argument(
        "--seconds", type=float, default=float(os.environ.get("BENCH_STREAM_SECONDS", 10))
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    data_dir = tempfile.mkdtemp(prefix="bench-activity-")
    setup_django(data_dir)
    from django.conf import settings

    from autonomy.observability.activity import activity_head
    from tests.autonomy.gate_fixtures import build_registry

    registry = build_registry()
    settings.AUTONOMY_ACTIVITY_STREAM_SECONDS = args.seconds + 60
    poll_ms = round(1000 * float(getattr(settings, "AUTONOMY_ACTIVITY_POLL_SECONDS", 0.25)))
    server = serve()
    host, port = server.server_address[:2]
    path = f"/activity/stream/?after={activity_head()}"

    received: dict[str, float] = {}
    committed: dict[str, float] = {}
    ready, stop = threading.Event(), threading.Event()
    reader = threading.Thread(
        target=follow,
        args=(host, port, path, session_cookie(), received, ready, stop),
        daemon=True,
    )
    reader.start()
    if not ready.wait(30):
        print("# the stream did not open", file=sys.stderr)
        return 1

    actions = actions_for(registry.agent, registry.post, int(args.rate * args.seconds))
    write_rate = write(actions, args.rate, committed)
    deadline = time.monotonic() + 30
    while len(received.keys() & committed.keys()) < len(committed) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    server.shutdown()

    lags = [1000 * (received[k] - committed[k]) for k in committed if k in received]
    figures: dict = {}
    emit(figures, "stream_events_sent", len(committed))
    emit(figures, "stream_events_received", len(lags))
    emit(figures, "stream_write_rate_per_s", round(write_rate, 1))
    emit(figures, "stream_poll_ms", poll_ms)
    if lags:
        emit(figures, "stream_lag_p50_ms", round(statistics.median(lags), 1))
        emit(figures, "stream_lag_p99_ms", round(pct(lags, 0.99), 1))
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2, sort_keys=True) + "\n")
    return 0 if lags and len(lags) == len(committed) else 1


if __name__ == "__main__":
    sys.exit(main())
