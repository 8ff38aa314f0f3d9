"""Keep a few demo runs going for ``make run`` and play the demo agents' task steps.

One line per thing done. Ctrl-C or SIGTERM stops it after the current round.
"""

import logging
import random
import signal
import threading

from django.core.management.base import BaseCommand
from django.db import close_old_connections

from demo.approvals import Desk
from demo.workflows import DemoPlayer

log = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Keep N demo workflow runs in flight and do the demo agents' tasks (until stopped)."

    def add_arguments(self, parser):
        parser.add_argument("--runs", type=int, default=3, help="runs in flight (default 3)")
        parser.add_argument(
            "--interval", type=float, default=2.0, help="seconds between rounds (default 2)"
        )
        parser.add_argument(
            "--think", type=float, default=4.0, help="longest an agent takes for a task (s)"
        )
        parser.add_argument(
            "--rounds", type=int, default=0, help="stop after this many rounds (0: never)"
        )
        parser.add_argument("--seed", type=int, default=None, help="random seed")
        parser.add_argument(
            "--desk-think",
            type=float,
            default=10.0,
            help="seconds each demo approver takes per decision (0: no desk)",
        )

    def handle(self, *args, runs, interval, think, rounds, seed, desk_think, **options):
        stop = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            player = DemoPlayer(in_flight=runs, think_seconds=think, rng=random.Random(seed))
            desk = Desk(think_seconds=desk_think, rng=random.Random(seed)) if desk_think else None
            self._loop(stop, player, desk, interval=interval, rounds=rounds)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _loop(self, stop, player: DemoPlayer, desk: Desk | None, *, interval: float, rounds: int):
        self._say(f"demo_runs: keeping {player.in_flight} demo run(s) in flight; Ctrl-C stops")
        done = 0
        while not stop.is_set():
            close_old_connections()
            try:
                for line in player.tick() + (desk.tick() if desk else []):
                    self._say(line)
            except Exception as exc:  # keep the demo going beside the web server; log why
                log.exception("demo_runs round failed")
                self._say(f"round failed: {type(exc).__name__}: {exc}")
            done += 1
            if rounds and done >= rounds:
                break
            stop.wait(interval)
        for line in player.finish_tasks(now=None):  # leave no task claimed by nobody
            self._say(line)
        self._say("demo_runs: stopped")

    def _say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
