"""Claims on resource keys: one holder, waiters by priority, leases that run out."""

import threading
import time
from datetime import UTC, datetime

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.db.models import Count

from autonomy.errors import DomainError, ErrorCode
from autonomy.models import AuditRecord
from tests.conftest import wait_for
from tests.workflows.coordination_fixtures import run_for
from tests.workflows.fixtures import build_world
from workflows import coordination, tasks
from workflows.coordination import claim_acquire, claim_release, claim_renew, claims_expire
from workflows.models import Claim, ClaimStatus

KEY = "erp.invoice:INV-1"
T0 = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


@pytest.fixture
def agents(db):
    world = build_world(clerks=4)
    return world.agents


def fresh(claim: Claim) -> Claim:
    claim.refresh_from_db()
    return claim


# --- one holder, waiters ---------------------------------------------------------------------


def test_free_key_is_held_at_once_with_its_lease(agents):
    with time_machine.travel(T0, tick=False):
        claim = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=30)
    assert claim.status == ClaimStatus.HELD
    assert claim.acquired_at == T0
    assert (claim.lease_until - T0).total_seconds() == 30


def test_second_agent_waits_and_asking_again_returns_the_same_claim(agents):
    claim_acquire(agent=agents[0], resource_key=KEY)
    waiting = claim_acquire(agent=agents[1], resource_key=KEY)
    again = claim_acquire(agent=agents[1], resource_key=KEY)
    assert waiting.status == ClaimStatus.WAITING and waiting.lease_until is None
    assert again.pk == waiting.pk
    assert Claim.objects.filter(resource_key=KEY).count() == 2


def test_holder_asking_again_keeps_its_claim_and_its_lease(agents):
    with time_machine.travel(T0, tick=False) as clock:
        held = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=60)
        clock.shift(20)
        again = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=60)
    assert again.pk == held.pk and again.lease_until == held.lease_until


def test_release_promotes_the_waiter_with_its_lease_starting_then(agents):
    with time_machine.travel(T0, tick=False) as clock:
        held = claim_acquire(agent=agents[0], resource_key=KEY)
        waiting = claim_acquire(agent=agents[1], resource_key=KEY, lease_seconds=45)
        clock.shift(10)
        released = claim_release(agent=agents[0], claim_id=held.pk)
    promoted = fresh(waiting)
    assert released.status == ClaimStatus.RELEASED
    assert promoted.status == ClaimStatus.HELD
    assert promoted.acquired_at == released.ended_at
    assert (promoted.lease_until - promoted.acquired_at).total_seconds() == 45


def test_releasing_twice_is_harmless(agents):
    held = claim_acquire(agent=agents[0], resource_key=KEY)
    claim_release(agent=agents[0], claim_id=held.pk)
    again = claim_release(agent=agents[0], claim_id=held.pk)
    assert again.status == ClaimStatus.RELEASED


def test_only_the_claims_agent_can_release_it(agents):
    held = claim_acquire(agent=agents[0], resource_key=KEY)
    with pytest.raises(DomainError) as refused:
        claim_release(agent=agents[1], claim_id=held.pk)
    assert refused.value.code == ErrorCode.CLAIM_NOT_HELD and refused.value.status_code == 409
    assert fresh(held).status == ClaimStatus.HELD


def test_releasing_a_waiting_claim_cancels_it_and_leaves_the_holder(agents):
    held = claim_acquire(agent=agents[0], resource_key=KEY)
    waiting = claim_acquire(agent=agents[1], resource_key=KEY)
    cancelled = claim_release(agent=agents[1], claim_id=waiting.pk)
    assert cancelled.status == ClaimStatus.CANCELLED and cancelled.ended_at is not None
    assert fresh(held).status == ClaimStatus.HELD
    claim_release(agent=agents[0], claim_id=held.pk)
    assert not Claim.objects.filter(resource_key=KEY, status=ClaimStatus.HELD).exists()


def test_renew_extends_the_holders_lease(agents):
    with time_machine.travel(T0, tick=False) as clock:
        held = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=60)
        clock.shift(50)
        renewed = claim_renew(agent=agents[0], claim_id=held.pk)
    assert (renewed.lease_until - T0).total_seconds() == 110


def test_a_waiting_claim_cannot_be_renewed(agents):
    claim_acquire(agent=agents[0], resource_key=KEY)
    waiting = claim_acquire(agent=agents[1], resource_key=KEY)
    with pytest.raises(DomainError) as refused:
        claim_renew(agent=agents[1], claim_id=waiting.pk)
    assert refused.value.code == ErrorCode.CLAIM_NOT_HELD
    assert refused.value.details["status"] == ClaimStatus.WAITING


@pytest.mark.parametrize(
    "key",
    ["", "no-colon", "Upper:1", "erp:", "erp:has space", "erp:a/b", "erp:" + "x" * 200],
)
def test_malformed_resource_key_is_refused_with_validation_failed(agents, key):
    with pytest.raises(DomainError) as refused:
        claim_acquire(agent=agents[0], resource_key=key)
    assert refused.value.code == ErrorCode.VALIDATION_FAILED
    assert "resource_key" in refused.value.details
    assert not Claim.objects.exists()


@pytest.mark.parametrize("field,value", [("lease_seconds", 0), ("priority", 10_000)])
def test_out_of_range_lease_or_priority_is_refused(agents, field, value):
    with pytest.raises(DomainError) as refused:
        claim_acquire(agent=agents[0], resource_key=KEY, **{field: value})
    assert refused.value.code == ErrorCode.VALIDATION_FAILED and field in refused.value.details


# --- priorities ------------------------------------------------------------------------------


def test_waiters_are_promoted_by_priority_not_by_arrival(agents):
    holder = claim_acquire(agent=agents[0], resource_key=KEY, priority=0)
    low = claim_acquire(agent=agents[1], resource_key=KEY, priority=1)
    high = claim_acquire(agent=agents[2], resource_key=KEY, priority=5)
    middle = claim_acquire(agent=agents[3], resource_key=KEY, priority=3)
    order = []
    current = holder
    for _ in range(3):
        claim_release(agent=current.agent, claim_id=current.pk)
        current = Claim.objects.select_related("agent").get(
            resource_key=KEY, status=ClaimStatus.HELD
        )
        order.append(current.pk)
    assert order == [high.pk, middle.pk, low.pk]


def test_equal_priorities_are_promoted_oldest_first(agents):
    holder = claim_acquire(agent=agents[0], resource_key=KEY)
    first = claim_acquire(agent=agents[1], resource_key=KEY, priority=2)
    claim_acquire(agent=agents[2], resource_key=KEY, priority=2)
    claim_release(agent=agents[0], claim_id=holder.pk)
    assert fresh(first).status == ClaimStatus.HELD


def test_higher_priority_request_asks_the_holder_to_yield_without_preempting_it(agents):
    holder = claim_acquire(agent=agents[0], resource_key=KEY, priority=1)
    urgent = claim_acquire(agent=agents[1], resource_key=KEY, priority=5)
    renewed = claim_renew(agent=agents[0], claim_id=holder.pk)
    assert renewed.status == ClaimStatus.HELD and renewed.yield_requested
    assert fresh(urgent).status == ClaimStatus.WAITING
    assert claim_acquire(agent=agents[0], resource_key=KEY).yield_requested


def test_lower_or_equal_priority_requests_do_not_ask_the_holder_to_yield(agents):
    holder = claim_acquire(agent=agents[0], resource_key=KEY, priority=3)
    claim_acquire(agent=agents[1], resource_key=KEY, priority=3)
    claim_acquire(agent=agents[2], resource_key=KEY, priority=0)
    assert not fresh(holder).yield_requested


def test_yield_request_is_withdrawn_when_the_higher_waiter_gives_up(agents):
    holder = claim_acquire(agent=agents[0], resource_key=KEY, priority=1)
    urgent = claim_acquire(agent=agents[1], resource_key=KEY, priority=5)
    claim_acquire(agent=agents[2], resource_key=KEY, priority=0)
    claim_release(agent=agents[1], claim_id=urgent.pk)
    assert not fresh(holder).yield_requested


# --- leases that run out ---------------------------------------------------------------------


def test_lapsed_holder_is_expired_by_the_sweep_and_the_top_waiter_promoted(agents):
    with time_machine.travel(T0, tick=False) as clock:
        stuck = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=60)
        low = claim_acquire(agent=agents[1], resource_key=KEY, priority=1)
        top = claim_acquire(agent=agents[2], resource_key=KEY, priority=2)
        clock.shift(59)
        assert claims_expire() == 0
        clock.shift(2)
        assert claims_expire() == 1
        with pytest.raises(DomainError) as refused:
            claim_renew(agent=agents[0], claim_id=stuck.pk)
    assert refused.value.code == ErrorCode.CLAIM_NOT_HELD
    assert fresh(stuck).status == ClaimStatus.EXPIRED
    assert fresh(top).status == ClaimStatus.HELD and fresh(low).status == ClaimStatus.WAITING
    kinds = list(
        AuditRecord.objects.filter(kind__startswith="claim_").values_list("kind", flat=True)
    )
    assert kinds == ["claim_expired", "claim_granted"]


def test_renew_after_the_lease_ran_out_hands_the_key_to_the_waiter(agents):
    with time_machine.travel(T0, tick=False) as clock:
        stuck = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=60)
        waiting = claim_acquire(agent=agents[1], resource_key=KEY)
        clock.shift(61)
        with pytest.raises(DomainError) as refused:
            claim_renew(agent=agents[0], claim_id=stuck.pk)
    assert refused.value.code == ErrorCode.CLAIM_NOT_HELD
    assert fresh(stuck).status == ClaimStatus.EXPIRED
    assert fresh(waiting).status == ClaimStatus.HELD


def test_lapsed_lease_nobody_waits_for_can_still_be_renewed(agents):
    with time_machine.travel(T0, tick=False) as clock:
        held = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=60)
        clock.shift(90)
        renewed = claim_renew(agent=agents[0], claim_id=held.pk)
    assert renewed.status == ClaimStatus.HELD
    assert (renewed.lease_until - T0).total_seconds() == 150


def test_new_request_takes_over_a_lapsed_lease_without_waiting_for_the_sweep(agents):
    with time_machine.travel(T0, tick=False) as clock:
        stuck = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=60)
        clock.shift(61)
        taker = claim_acquire(agent=agents[1], resource_key=KEY)
    assert taker.status == ClaimStatus.HELD
    assert fresh(stuck).status == ClaimStatus.EXPIRED


def test_releasing_after_the_lease_ran_out_says_the_claim_was_lost(agents):
    with time_machine.travel(T0, tick=False) as clock:
        stuck = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=60)
        clock.shift(61)
        claims_expire()
        with pytest.raises(DomainError) as refused:
            claim_release(agent=agents[0], claim_id=stuck.pk)
    assert refused.value.code == ErrorCode.CLAIM_NOT_HELD


def test_beat_sweeps_claims_every_few_seconds(agents):
    entry = settings.CELERY_BEAT_SCHEDULE["claims-sweep"]
    assert entry["task"] == "workflows.tasks.claims_sweep" and entry["schedule"] <= 10
    with time_machine.travel(T0, tick=False) as clock:
        stuck = claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=5)
        clock.shift(6)
        assert tasks.claims_sweep() == 1
    assert fresh(stuck).status == ClaimStatus.EXPIRED


# --- on the run's timeline --------------------------------------------------------------------


def test_conflicts_yields_expiries_and_grants_appear_on_the_run_timeline(agents):
    run = run_for(agents[:3])
    with time_machine.travel(T0, tick=False) as clock:
        claim_acquire(agent=agents[0], resource_key=KEY, lease_seconds=60, run=run)
        claim_acquire(agent=agents[1], resource_key=KEY, priority=4, run=run)
        clock.shift(61)
        claims_expire()
    events = list(run.events.filter(kind__startswith="claim_").values_list("kind", "actor"))
    assert events == [
        ("claim_conflict", agents[1].slug),
        ("claim_yield_requested", agents[1].slug),
        ("claim_expired", "system"),
        ("claim_granted", agents[1].slug),
    ]
    conflict = run.events.get(kind="claim_conflict")
    assert conflict.data["holder"]["agent"] == agents[0].slug
    assert conflict.data["waiter"]["resource_key"] == KEY


def test_a_claim_without_a_run_writes_no_timeline_event(agents):
    run = run_for(agents[:2])
    claim_acquire(agent=agents[0], resource_key=KEY)
    claim_acquire(agent=agents[1], resource_key=KEY)
    assert not run.events.filter(kind__startswith="claim_").exists()


def test_a_claim_can_only_name_a_run_its_agent_is_assigned_to(agents):
    run = run_for(agents[:1])
    with pytest.raises(DomainError) as refused:
        claim_acquire(agent=agents[3], resource_key=KEY, run=run)
    assert refused.value.code == ErrorCode.PERMISSION_DENIED
    assert not Claim.objects.exists()


# --- concurrency on PostgreSQL ------------------------------------------------------------------

RESOURCES = ["erp.ledger:A", "erp.ledger:B", "erp.ledger:C"]
ROUNDS = 3


def _two_holders() -> list:
    held = Claim.objects.filter(status=ClaimStatus.HELD).values("resource_key")
    return list(held.annotate(n=Count("id")).filter(n__gt=1))


def test_twenty_agents_contending_for_three_resources_never_hold_one_together(
    postgres, transactional_db
):
    agents = build_world(clerks=20).agents
    barrier = threading.Barrier(len(agents))
    guard = threading.Lock()
    holding: dict[str, str | None] = dict.fromkeys(RESOURCES)
    intervals: dict[str, list[tuple[float, float, str]]] = {key: [] for key in RESOURCES}
    errors: list[BaseException] = []
    done = threading.Event()
    doubles: list = []

    def contend(index: int, agent) -> None:
        try:
            barrier.wait(timeout=30)
            for turn in range(ROUNDS):
                key = RESOURCES[(index + turn) % len(RESOURCES)]
                claim = claim_acquire(
                    agent=agent, resource_key=key, priority=index % 4, lease_seconds=300
                )
                if claim.status == ClaimStatus.WAITING:
                    wait_for(
                        lambda c=claim: Claim.objects.filter(
                            pk=c.pk, status=ClaimStatus.HELD
                        ).exists(),
                        timeout=120,
                        interval=0.02,
                        what=f"{agent.slug} promoted on {key}",
                    )
                start = time.monotonic()
                with guard:
                    assert holding[key] is None, f"{agent.slug} and {holding[key]} on {key}"
                    holding[key] = agent.slug
                holders = list(
                    Claim.objects.filter(resource_key=key, status=ClaimStatus.HELD).values_list(
                        "agent__slug", flat=True
                    )
                )
                assert holders == [agent.slug], holders
                with guard:
                    holding[key] = None
                    intervals[key].append((start, time.monotonic(), agent.slug))
                claim_release(agent=agent, claim_id=claim.pk)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    def watch() -> None:
        try:
            while not done.wait(0.01):
                doubles.extend(_two_holders())
        finally:
            connection.close()

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=contend, args=(i, a)) for i, a in enumerate(agents)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    done.set()
    watcher.join(timeout=30)

    assert not errors, errors[:3]
    assert not doubles
    for key, spans in intervals.items():
        spans.sort()
        for (_, end, who), (start, _, next_who) in zip(spans, spans[1:], strict=False):
            assert start >= end, f"{who} and {next_who} overlap on {key}"
    held_by = [who for spans in intervals.values() for _, _, who in spans]
    assert sorted(set(held_by)) == sorted(a.slug for a in agents)
    assert all(held_by.count(a.slug) == ROUNDS for a in agents)
    assert Claim.objects.filter(status=ClaimStatus.RELEASED).count() == len(agents) * ROUNDS
    assert not Claim.objects.filter(status__in=coordination.OPEN).exists()
    for key in RESOURCES:  # the database's own clock agrees: hold periods follow each other
        rows = list(
            Claim.objects.filter(resource_key=key).order_by("acquired_at")
            .values_list("acquired_at", "ended_at", "agent__slug")
        )  # fmt: skip
        for earlier, later in zip(rows, rows[1:], strict=False):
            assert later[0] >= earlier[1], (key, earlier, later)


def test_sixteen_simultaneous_requests_for_a_free_key_make_one_holder(postgres, transactional_db):
    agents = build_world(clerks=16).agents
    barrier = threading.Barrier(len(agents))
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def ask(agent) -> None:
        try:
            barrier.wait(timeout=30)
            outcomes.append(claim_acquire(agent=agent, resource_key=KEY).status)
        except BaseException as error:  # noqa: BLE001 - reported by the main thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=ask, args=(a,)) for a in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    assert sorted(outcomes) == [ClaimStatus.HELD] + [ClaimStatus.WAITING] * 15
    assert Claim.objects.filter(resource_key=KEY, status=ClaimStatus.HELD).count() == 1


def test_a_killed_holder_gives_its_keys_to_the_next_waiter_at_once(agents):
    from interventions import services as intervention
    from tests.factories import UserFactory

    holder, waiter = agents[0], agents[1]
    held = claim_acquire(agent=holder, resource_key=KEY)
    waiting = claim_acquire(agent=waiter, resource_key=KEY)
    assert held.status == ClaimStatus.HELD and waiting.status == ClaimStatus.WAITING
    boss = UserFactory(username="claims-boss", is_staff=True, is_superuser=True)

    intervention.agent_kill(agent=holder, by=boss, reason="compromised")

    assert fresh(held).status == ClaimStatus.RELEASED
    assert fresh(waiting).status == ClaimStatus.HELD
    with pytest.raises(DomainError) as refused:
        claim_renew(agent=fresh_agent(holder), claim_id=held.pk)
    assert refused.value.code == ErrorCode.AGENT_QUARANTINED


def fresh_agent(agent):
    agent.refresh_from_db()
    return agent
