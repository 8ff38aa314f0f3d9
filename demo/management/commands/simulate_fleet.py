import logging
import signal
import threading

from django.core.management.base import BaseCommand, CommandError

from demo.fleet import fleet_start, wait_for_portal


class Command(BaseCommand):
    help = (
        "Drive demo agents through the SDK against the portal (and, through it, the demo "
        "systems): mostly allowed work, some approvals, a few denials, a couple drifting."
    )

    def add_arguments(self, parser):
        parser.add_argument("--agents", type=int, default=1000, help="how many (default 1000)")
        parser.add_argument("--duration", type=float, default=None, help="seconds (default: "
                            "until Ctrl-C)")  # fmt: skip
        parser.add_argument("--rate", type=float, default=5.0, help="plays per second (5)")
        parser.add_argument("--concurrency", type=int, default=8, help="threads (8)")
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the portal")
        parser.add_argument("--log-every", type=int, default=100, help="actions per log line")
        parser.add_argument("--seed", type=int, default=None, help="random seed")

    def handle(self, *args, agents, duration, rate, concurrency, url, log_every, seed, **opts):
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
        logging.getLogger("httpx").setLevel(logging.WARNING)  # not a line per request
        stop = threading.Event()
        previous = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            self._simulate(stop, agents, duration, rate, concurrency, url, log_every, seed)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _simulate(self, stop, agents, duration, rate, concurrency, url, log_every, seed):
        self.stdout.write(f"simulate_fleet: waiting for {url}/healthz")
        if not wait_for_portal(url, stop=stop):
            if stop.is_set():
                return
            raise CommandError(f"The portal at {url} did not answer /healthz.")
        try:
            fleet = fleet_start(url=url, agents=agents, rate=rate, concurrency=concurrency,
                                seed=seed, log_every=log_every)  # fmt: skip
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        fleet.stop = stop
        self.stdout.write(
            f"simulate_fleet: {len(fleet.members)} agents at {rate:g} plays/s on {url}"
        )
        fleet.run(duration=duration)
        self.stdout.write(f"simulate_fleet: stopped: {fleet.summary()}")
