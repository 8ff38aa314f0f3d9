"""The demo fleet: many demo agents working through the SDK, so the portal has life.

Each agent gets a credential named ``fleet`` through ``credential_issue`` (the previous
process's one is revoked first, so restarts never pile credentials up); its token lives only
in this process's memory. A steady scheduler hands one *play* at a time to a small thread
pool: mostly allowed reads and writes within the agent's grants, some large amounts that
need a person, a few ungranted operations that the gate denies, a few e-mails the content
rules stop (a card number: blocked; an off-brand promise: to a person), now and then a
workflow task pulled and completed, now and then a read or write of shared memory
(``memory.*``), and a couple of drifting agents that burst onto operations they never use.
One log line per ``log_every`` actions counts the decisions.
"""

import itertools
import logging
import random
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx

from agents import services
from agents.models import Agent, AgentStatus, Credential, Scope
from autonomy_sdk import Client, errors
from demo import guardrails
from demo.memory import CUSTOMERS

log = logging.getLogger(__name__)

CREDENTIAL_NAME = "fleet"
SUPPLIERS = ["Acme", "Globex", "Initech", "Umbrella", "Hooli"]
TITLES = ["VPN drops every hour", "Cannot open the ERP", "Laptop will not boot", "Printer jam"]
TEAMS = ["network-ops", "identity-team", "desk-side", "app-support"]
CONTACT_NOTES = ["prefers e-mail", "prefers phone", "prefers chat", "no calls after 17:00"]


def _n(rng: random.Random) -> int:
    return rng.randint(1, 99_999)


# role -> its everyday work: (operation, params maker), all within the demo grants
ROUTINE: dict[str, list[tuple[str, Callable]]] = {
    "invoice-processor": [
        ("erp.read-invoice", lambda r: {"invoice_id": f"INV-{_n(r):05d}"}),
        ("erp.match-purchase-order", lambda r: {"invoice_id": f"INV-{_n(r):05d}",
                                                "po_number": f"PO-{_n(r):05d}",
                                                "amount": r.randint(100, 4000)}),
        ("erp.post-invoice", lambda r: {"invoice_id": f"INV-F{uuid.uuid4().hex[:10]}",
                                        "amount": r.randint(120, 4000), "currency": "EUR"}),
    ],
    "payments-clerk": [
        ("erp.read-invoice", lambda r: {"invoice_id": f"INV-{_n(r):05d}"}),
        ("erp.pay-invoice", lambda r: {"invoice_id": f"INV-F{uuid.uuid4().hex[:10]}",
                                       "amount": r.randint(50, 2000), "currency": "EUR"}),
    ],
    "po-buyer": [
        ("erp.create-purchase-order", lambda r: {"supplier": r.choice(SUPPLIERS),
                                                 "amount": r.randint(200, 6000)}),
        ("erp.read-invoice", lambda r: {"invoice_id": f"INV-{_n(r):05d}"}),
    ],
    "support-agent": [
        ("crm.read-account", lambda r: {"account_id": f"ACC-{_n(r):05d}"}),
        ("crm.update-contact", lambda r: {"contact_id": f"CON-{_n(r):05d}",
                                          "phone": f"+44 20 7946 {r.randint(0, 9999):04d}"}),
        ("itsm.create-incident", lambda r: {"title": r.choice(TITLES),
                                            "priority": r.randint(2, 4)}),
        ("memory.write", lambda r: {"key": f"customer:{r.choice(CUSTOMERS)}:contact",
                                    "value": r.choice(CONTACT_NOTES), "ttl_seconds": 7 * 86400}),
    ],
    "onboarding-agent": [
        ("crm.read-account", lambda r: {"account_id": f"ACC-{_n(r):05d}"}),
        ("memory.read", lambda r: {"key": f"customer:{r.choice(CUSTOMERS)}:contact"}),
        ("crm.verify-identity", lambda r: {"account_id": f"ACC-{_n(r):05d}",
                                           "document": f"passport:{r.randint(10**7, 10**8 - 1)}"}),
    ],
    "incident-triager": [
        ("itsm.create-incident", lambda r: {"title": r.choice(TITLES),
                                            "priority": r.randint(1, 4)}),
        ("itsm.enrich-incident", lambda r: {"incident_id": f"INC-{_n(r):05d}",
                                            "category": "network"}),
        ("itsm.assign-incident", lambda r: {"incident_id": f"INC-{_n(r):05d}",
                                            "team": r.choice(TEAMS)}),
        # IT's memory has the known issues; a customer-ops entry is not IT's to read
        ("memory.read", lambda r: {"key": r.choice(["vpn:known-issue", "customer:4411:contact"])}),
    ],
    "access-provisioner": [
        ("itsm.create-incident", lambda r: {"title": "Access request", "priority": 3}),
    ],
    "supplier-onboarder": [("crm.read-account", lambda r: {"account_id": f"ACC-{_n(r):05d}"})],
    "contract-reviewer": [("crm.read-account", lambda r: {"account_id": f"ACC-{_n(r):05d}"})],
    "hr-assistant": [("hris.read-employee", lambda r: {"employee_id": f"E-{_n(r):05d}"})],
    "data-analyst": [("warehouse.run-report", lambda r: {"report": "monthly-spend",
                                                         "limit": r.randint(10, 500)})],
}  # fmt: skip

# large amounts: the "above 10,000" policy sends them to a person
LARGE: dict[str, tuple[str, Callable]] = {
    "invoice-processor": ("erp.post-invoice", lambda r: {
        "invoice_id": f"INV-F{uuid.uuid4().hex[:10]}", "amount": r.randint(10_500, 60_000)}),
    "payments-clerk": ("erp.pay-invoice", lambda r: {
        "invoice_id": f"INV-F{uuid.uuid4().hex[:10]}", "amount": r.randint(10_500, 60_000)}),
    "po-buyer": ("erp.create-purchase-order", lambda r: {
        "supplier": r.choice(SUPPLIERS), "amount": r.randint(12_000, 90_000)}),
}  # fmt: skip

# operations few demo roles hold (named here): the others are denied them (grant_missing)
UNGRANTED = [
    ("erp.pay-invoice", lambda r: {"invoice_id": f"INV-{_n(r):05d}", "amount": 700},
     {"payments-clerk"}),
    ("itsm.delete-incident", lambda r: {"incident_id": f"INC-{_n(r):05d}"},
     {"support-agent", "incident-triager", "access-provisioner"}),
    ("crm.export-contacts", lambda r: {"limit": 5000}, {"onboarding-agent"}),
]  # fmt: skip

# what a drifting agent suddenly does: a burst on a connector its role never uses
DRIFT = [
    ("itsm.create-incident", lambda r: {"title": "Bulk ticket", "priority": 4}),
    ("crm.read-account", lambda r: {"account_id": f"ACC-{_n(r):05d}"}),
    ("erp.read-invoice", lambda r: {"invoice_id": f"INV-{_n(r):05d}"}),
]

TASK_ROLES = ("onboarding-agent", "incident-triager")  # the demo templates' task steps


@dataclass
class Member:
    slug: str
    role: str
    client: Client
    drifting: bool = False


@dataclass
class Tally:
    counts: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, what: str, n: int = 1) -> None:
        with self.lock:
            self.counts[what] += n

    def actions(self) -> int:
        with self.lock:
            return sum(self.counts[d] for d in ("allow", "needs_approval", "deny", "error"))

    def snapshot(self) -> Counter:
        with self.lock:
            return Counter(self.counts)


def pick_agents(*, count: int) -> list[Agent]:
    """``count`` active demo agents spread over the roles (round robin), the same ones on every
    start, so a fleet of 20 already has every kind of worker."""
    by_role: dict[str, list[Agent]] = {}
    agents = (
        Agent.objects.filter(status=AgentStatus.ACTIVE, role__slug__in=list(ROUTINE))
        .select_related("role")
        .order_by("role__slug", "slug")
    )
    for agent in agents:
        by_role.setdefault(agent.role.slug, []).append(agent)
    picked: list[Agent] = []
    for group in itertools.zip_longest(*by_role.values()):
        picked += [a for a in group if a is not None]
    return sorted(picked[:count], key=lambda a: a.slug)


def issue_tokens(*, agents: list[Agent]) -> dict[str, str]:
    """A fresh ``fleet`` credential per agent (the last process's revoked): slug -> token."""
    stale = Credential.objects.filter(agent__in=agents, name=CREDENTIAL_NAME, revoked_at=None)
    for credential in stale:
        services.credential_revoke(credential=credential, reason="fleet simulator restarted")
    scopes = [Scope.AGENT_READ, Scope.ACTIONS_WRITE, Scope.TASKS_WRITE]
    return {
        agent.slug: services.credential_issue(agent=agent, name=CREDENTIAL_NAME, scopes=scopes)[1]
        for agent in agents
    }


def wait_for_portal(url: str, *, stop: threading.Event, timeout: float = 300.0) -> bool:
    """True once ``url``/healthz answers 200; False if stopped or out of time first."""
    deadline = time.monotonic() + timeout
    while not stop.is_set() and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url.rstrip('/')}/healthz", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        stop.wait(0.5)
    return False


class Fleet:
    """Plays for ``members`` at ``rate`` plays per second on ``concurrency`` threads."""

    def __init__(self, *, url: str, tokens: dict[str, str], roles: dict[str, str],
                 rate: float = 5.0, concurrency: int = 8, seed: int | None = None,
                 log_every: int = 100, drifters: int = 2):  # fmt: skip
        self.rng = random.Random(seed)
        # one connection pool for the whole fleet; each agent's client only adds its token
        self.transport = httpx.HTTPTransport(retries=1)
        self.members = [
            Member(slug=slug, role=roles[slug],
                   client=Client(url, token, transport=self.transport, timeout=15.0, retries=2))
            for slug, token in sorted(tokens.items())
        ]  # fmt: skip
        for member in self.rng.sample(self.members, min(drifters, len(self.members))):
            member.drifting = True
        self.by_role: dict[str, list[Member]] = {}
        for member in self.members:
            self.by_role.setdefault(member.role, []).append(member)
        self.rate, self.concurrency, self.log_every = rate, concurrency, log_every
        self.tally = Tally()
        self.stop = threading.Event()
        self._logged = 0
        self._slots = threading.BoundedSemaphore(concurrency * 2)

    # --- one play -----------------------------------------------------------------------

    def _act(self, member: Member, operation: str, params: dict, reason: str) -> str:
        try:
            action = member.client.request_action(operation, params, reason)
        except errors.AutonomyError as exc:  # refused before a decision (paused agent, ...)
            self.tally.add("error")
            self.tally.add(f"error:{getattr(exc, 'code', type(exc).__name__)}")
            return "error"
        self.tally.add(action.decision)
        return action.decision

    def _task(self, member: Member) -> None:
        from demo.workflows import task_output

        try:
            task = member.client.next_task()
            if task is None:
                self.tally.add("task_none")
                return
            member.client.complete_task(task.id, task_output(step_key=task.step, rng=self.rng))
            self.tally.add("task_completed")
        except errors.AutonomyError as exc:
            self.tally.add(f"task_error:{getattr(exc, 'code', type(exc).__name__)}")

    def play(self) -> None:
        """One unit of work, chosen by the mix."""
        rng = self.rng
        roll = rng.random()
        if roll < 0.01:  # a drifting agent bursts onto a connector its role never uses
            drifters = [m for m in self.members if m.drifting]
            if drifters:
                member = rng.choice(drifters)
                operation, make = rng.choice(DRIFT)
                for _ in range(rng.randint(3, 6)):
                    self._act(member, operation, make(rng), "drift: catching up on a backlog")
                return
        if roll < 0.06:  # pull and complete a workflow task
            pool = [m for r in TASK_ROLES for m in self.by_role.get(r, [])]
            if pool:
                self._task(rng.choice(pool))
                return
        if roll < 0.10:  # an operation the agent was never granted
            operation, make, holders = rng.choice(UNGRANTED)
            outsiders = [m for m in self.members if m.role not in holders]
            if outsiders:
                self._act(rng.choice(outsiders), operation, make(rng), "fleet: outside my grants")
                return
        if roll < 0.12:  # content the guardrails stop: a card number, an off-brand promise
            operation, make, reason = rng.choice(guardrails.PLAYS)
            senders = [m for r in guardrails.SENDERS for m in self.by_role.get(r, [])]
            if senders:
                self._act(rng.choice(senders), operation, make(rng), reason)
                return
        if roll < 0.14:  # a large amount: a person decides (two stages for a payment)
            roles = [r for r in LARGE if r in self.by_role]
            if roles:
                role = rng.choice(roles)
                operation, make = LARGE[role]
                member = rng.choice(self.by_role[role])
                self._act(member, operation, make(rng), "fleet: large amount")
                return
        member = rng.choice(self.members)
        operation, make = rng.choice(ROUTINE[member.role])
        self._act(member, operation, make(rng), "fleet: routine work")

    def _play_safely(self) -> None:
        try:
            self.play()
        except Exception:  # one broken play must not end the fleet; say what broke
            log.exception("fleet: a play failed")
            self.tally.add("error")
        finally:
            self._slots.release()
            self._maybe_log()

    def _maybe_log(self) -> None:
        done = self.tally.actions()
        if done - self._logged >= self.log_every:
            self._logged = done - done % self.log_every
            log.info("fleet: %s", self.summary())

    def summary(self) -> str:
        c = self.tally.snapshot()
        return (
            f"{self.tally.actions()} actions (allow {c['allow']}, needs_approval "
            f"{c['needs_approval']}, deny {c['deny']}, error {c['error']}), "
            f"{c['task_completed']} tasks completed, {len(self.members)} agents"
        )

    # --- the loop -----------------------------------------------------------------------

    def run(self, *, duration: float | None = None) -> Counter:
        """Play until ``stop`` is set or ``duration`` seconds have passed; the tally."""
        started = time.monotonic()
        interval = 1.0 / self.rate if self.rate > 0 else 0.0
        next_at = started
        with ThreadPoolExecutor(self.concurrency, thread_name_prefix="fleet") as pool:
            while not self.stop.is_set():
                now = time.monotonic()
                if duration is not None and now - started >= duration:
                    break
                if next_at > now:
                    self.stop.wait(next_at - now)
                    continue
                if not self._slots.acquire(timeout=0.5):
                    continue  # the portal is slow: keep the pace, do not queue up
                pool.submit(self._play_safely)
                next_at += interval
                if next_at < now - 1.0:  # fell behind after a stall: do not catch up in a rush
                    next_at = now
            self.stop.set()
        self.transport.close()
        log.info("fleet stopped after %.0fs: %s", time.monotonic() - started, self.summary())
        return self.tally.snapshot()


def fleet_start(*, url: str, agents: int, rate: float = 5.0, concurrency: int = 8,
                seed: int | None = None, log_every: int = 100) -> Fleet:  # fmt: skip
    """A fleet of ``agents`` demo agents with fresh in-memory tokens, ready to ``run``."""
    chosen = pick_agents(count=agents)
    if not chosen:
        raise ValueError("No active demo agents: run `manage.py seed_demo` first.")
    tokens = issue_tokens(agents=chosen)
    roles = {agent.slug: agent.role.slug for agent in chosen}
    return Fleet(url=url, tokens=tokens, roles=roles, rate=rate, concurrency=concurrency,
                 seed=seed, log_every=log_every)  # fmt: skip
