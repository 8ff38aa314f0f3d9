"""The one connector layer every agent action goes through: ``call(operation, params, key)``.

Connector types are looked up by the connector's kind. This first cut ships the built-in
ledger, which every demo system (ERP, CRM, ITSM) uses until their real connector types land:
it records the call as a receipt keyed by the action id, so a redelivered task never performs
the side effect twice.
"""

from django.db import IntegrityError, transaction

from autonomy.models import ConnectorCall, Operation


class ConnectorError(Exception):
    """The system refused or failed; the message is safe to show (no secrets)."""


def _ledger(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    try:
        with transaction.atomic():
            receipt, created = ConnectorCall.objects.get_or_create(
                idempotency_key=idempotency_key,
                defaults={
                    "operation": operation,
                    "params": params,
                    "result": {"ok": True, "operation": operation.key, "accepted": params},
                },
            )
    except IntegrityError:  # a concurrent delivery of the same action won the insert
        receipt, created = ConnectorCall.objects.get(idempotency_key=idempotency_key), False
    return {**receipt.result, "receipt": receipt.pk, "replayed": not created}


EXECUTORS = {}
for _kind in ("internal", "erp", "crm", "itsm", "sql", "http", "mcp", "email"):
    EXECUTORS[_kind] = _ledger


def call(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    executor = EXECUTORS.get(operation.connector.kind)
    if executor is None:
        raise ConnectorError(f"No connector type for {operation.connector.kind!r}.")
    return executor(operation=operation, params=params, idempotency_key=idempotency_key)
