"""What a transaction on runs leaves for its end: the run events it adds, inserted together
in one statement, and the steps it made ready, sent to workers once it commits."""

from django.db import transaction

from agents.models import Agent
from workflows.models import Run, RunEvent, StepRun


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
    """A transaction's run events and the steps it sends, written when the transaction's
    work is done: ``with transaction.atomic(), Outbox() as out:``.

    The use case that owns the transaction makes one and passes it to every function that
    changes runs. On leaving the block without an error, the events are inserted together
    and every step in ``ready`` or ``sends`` is sent after commit; a step worker may take
    the one step in ``ready`` out first, to execute it at once (``execute``). Leaving by an
    error writes and sends nothing (and the transaction rolls back).
    """

    def __init__(self) -> None:
        self.events: list[RunEvent] = []
        self.ready: list[StepRun] = []  # operation steps made ready, for a worker now
        self.sends: list[tuple] = []  # (step run id, countdown): sent again, or later

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

    def step_ready(self, step_run: StepRun) -> None:
        """An operation step was made ready: a worker executes it."""
        self.ready.append(step_run)

    def send(self, step_run_id, *, countdown: float | None = None) -> None:
        """Send a step to a worker after commit (again, or after ``countdown`` seconds)."""
        self.sends.append((step_run_id, countdown))

    def write(self) -> None:
        if self.events:
            RunEvent.objects.bulk_create(self.events)
            self.events = []
        sends = [(step_run.pk, None) for step_run in self.ready] + self.sends
        self.ready, self.sends = [], []
        for step_run_id, countdown in sends:
            transaction.on_commit(lambda i=step_run_id, c=countdown: step_send(i, countdown=c))
