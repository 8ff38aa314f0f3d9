"""What a transaction on runs leaves for its end: the run events it adds, inserted together
in one statement, and the steps it made ready, sent to workers once it commits."""

from django.db import transaction

from agents.models import Agent
from workflows.models import Run, RunEvent, StepRun
from workflows.services.rollup import RollupCounts


def actor_name(by) -> str:
    """How a run's timeline and the audit trail name who did something."""
    if by is None:
        return "system"
    if isinstance(by, Agent):
        return by.slug
    return getattr(by, "username", str(by))


def step_send(step_run_id, *, countdown: float | None = None) -> None:
    """Send a step to a worker now (``workflows.tasks.step_execute``)."""
    from workflows import tasks

    if countdown:
        tasks.step_execute.apply_async((str(step_run_id),), countdown=countdown)
    else:
        tasks.step_execute.delay(str(step_run_id))


class Outbox:
    """A transaction's run events, analytics counts and the steps it sends, written when the
    transaction's work is done: ``with transaction.atomic(), Outbox() as out:``.

    The use case that owns the transaction makes one and passes it to every function that
    changes runs. On leaving the block without an error, the events are inserted together
    and every step in ``ready`` or ``sends`` is sent after commit; a step worker may take
    the one step in ``ready`` out first, to execute it at once (``execute``). Leaving by an
    error writes and sends nothing (and the transaction rolls back).

    ``hold_ready`` (a worker that may claim the next step in the same transaction): the
    write of a step made ready is held (``held``), so that its claim writes it with its
    attempt in one statement; anything else that needs the row written calls
    ``write_held`` first, and the block's end writes what nobody claimed.
    """

    def __init__(self, *, hold_ready: bool = False) -> None:
        self.events: list[RunEvent] = []
        self.ready: list[StepRun] = []  # operation steps made ready, for a worker now
        self.sends: list[tuple] = []  # (step run id, countdown): sent again, or later
        self.hold_ready = hold_ready
        self.held: dict = {}  # step run: the fields still to write
        self.counts = RollupCounts()  # the analytics rollups' increments

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None:
            self.write()
        return False

    def event(self, run: Run, kind: str, message: str, *, step_run=None, actor="", **data):
        """Add an entry to the run's timeline."""
        self.events.append(
            RunEvent(
                run=run, step_run=step_run, kind=kind, actor=actor, message=message[:500], data=data
            )
        )

    def step_ready(self, step_run: StepRun, *, unwritten=()) -> None:
        """An operation step was made ready: a worker executes it. ``unwritten``: the fields
        making it ready changed and nobody wrote yet: written now, or held."""
        if unwritten and self.hold_ready:
            self.held[step_run] = list(unwritten)
        elif unwritten:
            step_run.save(update_fields=list(unwritten))
        self.ready.append(step_run)

    def take_held(self, step_run: StepRun) -> list[str]:
        """The fields of ``step_run`` whose write is held, for its claim to write them."""
        return self.held.pop(step_run, [])

    def write_held(self) -> None:
        """Write the held step runs: before anything reads or picks by step runs again."""
        while self.held:
            step_run, fields = self.held.popitem()
            step_run.save(update_fields=fields)

    def send(self, step_run_id, *, countdown: float | None = None) -> None:
        """Send a step to a worker after commit (again, or after ``countdown`` seconds)."""
        self.sends.append((step_run_id, countdown))

    def write(self) -> None:
        self.write_held()
        if self.events:
            RunEvent.objects.bulk_create(self.events)
            self.events = []
        self.counts.write()
        sends = [(step_run.pk, None) for step_run in self.ready] + self.sends
        self.ready, self.sends = [], []
        for step_run_id, countdown in sends:
            transaction.on_commit(lambda i=step_run_id, c=countdown: step_send(i, countdown=c))
