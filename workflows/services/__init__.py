"""Use cases of runs, by concern: starting (``start``), advancing (``advance``), executing an
operation step on a worker (``execute``), failure, retry, escalation and compensation
(``failure``), agents' tasks (``agent_tasks``), people's controls (``controls``) and the
sweep (``sweep``); with what they share: a transaction's run events and sends (``outbox``),
locking (``locking``) and who gets a step (``assignment``).

The database holds all state; Celery tasks only carry step-run ids. Every transition locks
the run row, so two branches finishing at once advance the run one after the other. A step's
action uses the idempotency key ``step-run:<id>:<attempt>``, and executing it goes through the
connector with the action id as its key, so a redelivered task never causes a second effect.

    pending ─deps done─▶ ready ─worker─▶ running ─action settled─▶ succeeded ─▶ (advance)
                           │                 └─▶ waiting_approval ─decided─┘
                           └─(task step)─▶ waiting_agent ─claim─▶ running ─complete─┘
    failure: retry with backoff → escalate (agent / role, then a person) → fail → compensate
"""

from workflows.services.agent_tasks import (
    task_claim,
    task_complete,
    task_context,
    task_escalate,
    task_fail,
    task_handoff,
    task_next,
)
from workflows.services.assignment import require_active
from workflows.services.controls import (
    REDIRECTABLE,
    agent_steps_cancel,
    run_cancel,
    run_pause,
    run_resume,
    step_fail,
    step_redirect,
    step_retry,
    step_skip,
)
from workflows.services.execute import on_action_settled, step_execute, step_work
from workflows.services.failure import run_compensate
from workflows.services.start import run_start
from workflows.services.sweep import workflows_sweep

__all__ = [
    "REDIRECTABLE",
    "agent_steps_cancel",
    "on_action_settled",
    "require_active",
    "run_cancel",
    "run_compensate",
    "run_pause",
    "run_resume",
    "run_start",
    "step_execute",
    "step_fail",
    "step_redirect",
    "step_retry",
    "step_skip",
    "step_work",
    "task_claim",
    "task_complete",
    "task_context",
    "task_escalate",
    "task_fail",
    "task_handoff",
    "task_next",
    "workflows_sweep",
]
