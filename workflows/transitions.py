"""Which controls people may use on a run or a step in its present state.

One list for the services that enforce it and the pages that show the buttons.
"""

from workflows.models import RUN_FINISHED, Run, RunStatus, StepRun, StepStatus


def run_controls(*, run: Run) -> list[str]:
    """The controls a person may use on the run in its present state (one list for the
    services that enforce it and the pages that show the buttons)."""
    if run.status == RunStatus.RUNNING:
        return ["pause", "cancel"]
    if run.status == RunStatus.PAUSED:
        return ["resume", "cancel"]
    return []


def step_controls(*, run: Run, step_run: StepRun) -> list[str]:
    """The controls a person may use on this step of this run."""
    if run.status in (*RUN_FINISHED, RunStatus.COMPENSATING):
        return []
    controls = []
    if step_run.status in (StepStatus.ESCALATED, StepStatus.FAILED):
        controls.append("retry")
    if step_run.status in (
        StepStatus.PENDING,
        StepStatus.ESCALATED,
        StepStatus.WAITING_AGENT,
        StepStatus.READY,
        StepStatus.FAILED,
    ):
        controls.append("skip")
    if step_run.status == StepStatus.ESCALATED:
        controls.append("fail")
    return controls
