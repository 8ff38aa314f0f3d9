"""The built-in ledger: a simulated system that records each call as a receipt.

Used for ``internal`` connectors and for any ERP, CRM, ITSM, HTTP, SQL or e-mail connector
whose config does not name a real system yet (the demo's). The receipt, keyed by the action
id, means a redelivered task never performs the side effect twice.
"""

import time

from autonomy import rows
from autonomy.models import ConnectorCall, Operation

# Every workflow step and every allowed gate request of the demo's systems comes here: the
# receipt is read and written with statements built once (``autonomy.rows``), which cost a
# fifth of ``get_or_create`` (measured on a 30-step run in one process).
_RECEIPT = rows.Select(
    lambda key: ConnectorCall.objects.filter(idempotency_key=key),
    ConnectorCall._meta.get_field("idempotency_key"),
)


def execute(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    # Insert first, one statement that commits on its own: a redelivered action (or a
    # concurrent delivery, once its transaction ends) finds the key taken and reads the
    # receipt instead.
    result = {"ok": True, "operation": operation.key, "accepted": params}
    receipt = ConnectorCall.new(
        idempotency_key=idempotency_key, operation=operation, params=params, result=result
    )
    created = rows.insert(receipt, unless_taken=True)  # no signal listens to its saves
    if not created:
        receipt = _RECEIPT.one(idempotency_key)
    # A demo system's response time (connector config ``latency_ms``), after the side effect:
    # the window in which a killed worker leaves a call done but not yet recorded as done.
    latency_ms = operation.connector.config.get("latency_ms") or 0
    if latency_ms:
        time.sleep(min(float(latency_ms), 60_000) / 1000)
    return {**receipt.result, "receipt": receipt.pk, "replayed": not created}
