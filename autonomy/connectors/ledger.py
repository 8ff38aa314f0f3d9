"""The built-in ledger: a simulated system that records each call as a receipt.

Used for ``internal`` connectors and for any ERP, CRM, ITSM, HTTP, SQL or e-mail connector
whose config does not name a real system yet (the demo's). The receipt, keyed by the action
id, means a redelivered task never performs the side effect twice.
"""

import time

from django.db import IntegrityError, transaction

from autonomy.models import ConnectorCall, Operation


def execute(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    # Insert first, on its own (the first delivery's only statement): a redelivered action
    # (or a concurrent delivery, once its transaction ends) finds the key taken and reads the
    # receipt instead, as ``receipts.claim`` does.
    result = {"ok": True, "operation": operation.key, "accepted": params}
    try:
        with transaction.atomic():
            receipt = ConnectorCall.objects.create(
                idempotency_key=idempotency_key, operation=operation, params=params, result=result
            )
        created = True
    except IntegrityError:
        receipt, created = ConnectorCall.objects.get(idempotency_key=idempotency_key), False
    # A demo system's response time (connector config ``latency_ms``), after the side effect:
    # the window in which a killed worker leaves a call done but not yet recorded as done.
    latency_ms = operation.connector.config.get("latency_ms") or 0
    if latency_ms:
        time.sleep(min(float(latency_ms), 60_000) / 1000)
    return {**receipt.result, "receipt": receipt.pk, "replayed": not created}
