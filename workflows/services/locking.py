"""Locking a run and its step runs. Every change to a step run locks its run first, then
the step run, so no two transactions wait on each other in opposite orders, and two
branches finishing at once advance the run one after the other."""

from workflows.models import Run, StepRun


def run_lock(run_id) -> Run:
    """The run, locked, with its template (``of=self``: never the template every run of it
    shares)."""
    return Run.objects.select_for_update(of=("self",)).select_related("template").get(pk=run_id)


def step_lock(step_run_id) -> tuple[StepRun | None, Run | None]:
    """Lock a step run's run (found through the step run, in one statement), then the step
    run with what executing it needs: its step's operation and connector, its assignee with
    the assignee's user, role and unit. ``(None, None)`` when there is no such step run."""
    try:
        run = (
            Run.objects.select_for_update(of=("self",))
            .select_related("template")
            .filter(step_runs__pk=step_run_id)
            .get()
        )
    except Run.DoesNotExist:
        return None, None
    step_run = (
        StepRun.objects.select_for_update(of=("self",))
        .select_related(
            "step__operation__connector",
            "assignee__service_user",
            "assignee__role",
            "assignee__business_unit",
        )
        .get(pk=step_run_id)
    )
    return step_run, run


def step_relock(*, step_run: StepRun, run: Run) -> tuple[StepRun, Run]:
    """Lock again, in a later transaction, a step run and its run read by ``step_lock``:
    fresh rows, run first. Their step and template (a published version's, never changed)
    are kept."""
    template, step = run.template, step_run.step
    run = Run.objects.select_for_update().get(pk=run.pk)
    step_run = StepRun.objects.select_for_update().get(pk=step_run.pk)
    run.template = template
    step_run.step = step
    return step_run, run
