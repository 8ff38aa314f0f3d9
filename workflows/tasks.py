"""Thin Celery tasks of workflows: they carry ids and call services."""

from celery import shared_task

from workflows import coordination, services


@shared_task(acks_late=True, reject_on_worker_lost=True)
def step_execute(step_run_id: str) -> None:
    """Run one operation step (and the run's next ones, while the run is a chain: see
    ``services.step_work``). Idempotent by step run id: a redelivery is harmless."""
    services.step_work(step_run_id=step_run_id)


@shared_task(acks_late=True, reject_on_worker_lost=True)
def run_compensate(run_id: str) -> None:
    services.run_compensate(run_id=run_id)


@shared_task
def workflows_sweep(broker_returned: bool = False) -> dict:
    return services.workflows_sweep(broker_returned=broker_returned)


@shared_task
def claims_sweep() -> int:
    """Expire lapsed claim leases and promote the next waiters."""
    return coordination.claims_expire()
