"""Receipts of connector calls (``ConnectorCall``), keyed by the action id.

Two disciplines, chosen per connector type:

- ``finished`` / ``record``: the system honours an idempotency key of its own (HTTP's
  ``Idempotency-Key`` header), so a call may be repeated safely; the receipt only saves the
  repeat. Check, call, then record the answer.
- ``claim`` / ``finish`` / ``release``: the system has no idempotency key (SMTP, a SQL write),
  so a repeat would be a second side effect. The intent is recorded (and committed) *before*
  the side effect; a redelivery that finds a started intent refuses rather than risk a second
  one (at most once). ``release`` removes the intent when the system certainly did nothing.
"""

from django.db import IntegrityError, transaction

from autonomy.connectors.errors import ConnectorError
from autonomy.models import CallState, ConnectorCall, Operation


def finished(idempotency_key: str) -> ConnectorCall | None:
    return ConnectorCall.objects.filter(
        idempotency_key=idempotency_key, state=CallState.DONE
    ).first()


def record(*, operation: Operation, params: dict, idempotency_key: str, result: dict) -> None:
    """Store a finished call's answer; a concurrent delivery's receipt is left as it is."""
    try:
        with transaction.atomic():
            ConnectorCall.objects.update_or_create(
                idempotency_key=idempotency_key,
                defaults={
                    "operation": operation,
                    "params": params,
                    "result": result,
                    "state": CallState.DONE,
                },
            )
    except IntegrityError:  # a concurrent delivery recorded the same call first
        pass


def claim(*, operation: Operation, params: dict, idempotency_key: str) -> ConnectorCall | None:
    """Record the intent to perform a call. None when this caller now owns it; otherwise the
    receipt already there (done: answer from it; started: outcome unknown, do not repeat)."""
    try:
        with transaction.atomic():
            ConnectorCall.objects.create(
                idempotency_key=idempotency_key,
                operation=operation,
                params=params,
                result={},
                state=CallState.STARTED,
            )
        return None
    except IntegrityError:
        return ConnectorCall.objects.get(idempotency_key=idempotency_key)


def finish(*, idempotency_key: str, result: dict) -> None:
    ConnectorCall.objects.filter(idempotency_key=idempotency_key).update(
        result=result, state=CallState.DONE
    )


def release(*, idempotency_key: str) -> None:
    """Forget an intent whose side effect certainly did not happen, so a retry may run."""
    ConnectorCall.objects.filter(idempotency_key=idempotency_key, state=CallState.STARTED).delete()


def replay_or_refuse(receipt: ConnectorCall, *, system: str) -> dict:
    """What a redelivered at-most-once call answers, given the receipt it found."""
    if receipt.state == CallState.DONE:
        return {**receipt.result, "replayed": True}
    raise ConnectorError(
        f"An earlier attempt of this call to {system} started and its outcome is unknown; "
        "it is not repeated. Check the system before asking again."
    )
