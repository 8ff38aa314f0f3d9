"""Result rules: what a connector returned, checked after the fact.

An operation may declare how many records a result may hold (``result_max_records``) and
where they are (``result_records_key``, a dotted path; else ``data``, or the result itself
when it is a list). A result over the bound is the seed's "pulls data it shouldn't touch",
caught once it happened: a ``result_bound`` drift flag on the agent, with the evidence, in
the transaction that records the outcome (``actions.action_settle``).
"""

from agents import behaviour
from agents.models import DriftKind


def records_in(*, operation, outcome) -> int | None:
    """How many records ``outcome`` holds where ``operation`` says, or None when there is
    no list there."""
    found = outcome
    path = operation.result_records_key
    if path:
        for part in path.split("."):
            if isinstance(found, dict):
                found = found.get(part)
            elif isinstance(found, list) and part.isdigit() and int(part) < len(found):
                found = found[int(part)]
            else:
                return None
    elif isinstance(found, dict):
        found = found.get("data")
    return len(found) if isinstance(found, list) else None


def result_check(*, action) -> None:
    """Flag a succeeded action whose result holds more records than its operation allows."""
    operation = action.operation
    bound = operation.result_max_records
    if bound is None or action.outcome is None:
        return
    count = records_in(operation=operation, outcome=action.outcome)
    if count is None or count <= bound:
        return
    behaviour.flag_raise(
        agent=action.agent,
        kind=DriftKind.RESULT_BOUND,
        subject=operation.key,
        evidence={
            "operation": operation.key,
            "action_id": str(action.pk),
            "records": count,
            "bound": bound,
            "records_key": operation.result_records_key or "data",
        },
    )
