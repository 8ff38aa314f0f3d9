"""The one connector layer every agent action goes through: ``call(operation, params, key)``.

A connector's kind picks its type (one module each): ``rest`` (HTTP/REST, operations imported
from OpenAPI), ``sql`` (PostgreSQL), ``smtp`` (e-mail) and the built-in ``ledger``, which
simulates a system by recording receipts. ERP, CRM, ITSM and HTTP connectors are HTTP
systems once their config has a ``base_url``; SQL once it names a ``dsn_secret``; e-mail once
it names a ``host``; MCP (``mcp_client``, tools on an MCP server) once it has a ``url``;
until then (the demo's), and for ``internal``, the ledger answers. ``memory`` is the kernel's
shared memory (``autonomy.memory``): it answers from our own database, so its operations run
in the request that asked for them once the gate allows them (``runs_inline``). Secrets live
encrypted in ``ConnectorSecret`` (``vault``) and never leave this package: error messages are
scrubbed of them. The idempotency key (the action id) makes a redelivered call harmless in
every type (see ``receipts``).

When an operation's ``config.result_schema`` is set, the system's answer (``result["data"]``,
or the whole result for the ledger) must match it, else the call fails.
"""

import logging

import jsonschema
from django.db import DatabaseError

from autonomy.connectors import ledger, mcp_client, rest, smtp, sql, vault
from autonomy.connectors.errors import ConnectorError
from autonomy.models import ConnectorKind, Operation

__all__ = ["EXECUTORS", "ConnectorError", "call", "runs_inline"]

log = logging.getLogger(__name__)


def _real_or_ledger(execute, required_setting: str):
    """The real type when the connector's config names its system, else the ledger."""

    def run(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
        if operation.connector.config.get(required_setting):
            return execute(operation=operation, params=params, idempotency_key=idempotency_key)
        return ledger.execute(operation=operation, params=params, idempotency_key=idempotency_key)

    run.__name__ = f"{execute.__module__.rpartition('.')[2]}_or_ledger"
    return run


def _memory(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    from autonomy.memory.services import memory_execute

    return memory_execute(operation=operation, params=params, idempotency_key=idempotency_key)


_http = _real_or_ledger(rest.execute, "base_url")
EXECUTORS = {
    "internal": ledger.execute,
    "erp": _http,
    "crm": _http,
    "itsm": _http,
    "http": _http,
    "sql": _real_or_ledger(sql.execute, "dsn_secret"),
    "email": _real_or_ledger(smtp.execute, "host"),
    "mcp": _real_or_ledger(mcp_client.execute, "url"),
    "memory": _memory,
}
# Connector types that answer from our own database, in a few milliseconds: an allowed
# action of theirs runs in the request that asked for it (in the transaction recording its
# decision: ``actions.action_request``), and its answer carries the outcome.
INLINE_KINDS = frozenset({ConnectorKind.MEMORY})


def runs_inline(operation: Operation) -> bool:
    return operation.connector.kind in INLINE_KINDS


def _check_result(operation: Operation, result: dict) -> None:
    schema = (operation.config or {}).get("result_schema")
    if not schema:
        return
    answer = result.get("data", result) if isinstance(result, dict) else result
    error = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(answer)
    )
    if error is not None:
        where = "/".join(map(str, error.absolute_path)) or "(root)"
        raise ConnectorError(
            f"{operation.key} answered outside its result schema at {where} "
            f"({error.validator} {error.validator_value!r} expected)."
        )


def call(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    """Run ``operation`` with ``params`` once per ``idempotency_key``; the system's answer.

    Raises ConnectorError with a message safe to show: no secret of the connector in it.
    """
    connector = operation.connector
    executor = EXECUTORS.get(connector.kind)
    if executor is None:
        raise ConnectorError(f"No connector type for {connector.kind!r}.")
    if not connector.enabled:
        raise ConnectorError(f"Connector {connector.slug!r} is disabled.")
    try:
        result = executor(operation=operation, params=params, idempotency_key=idempotency_key)
        _check_result(operation, result)
    except ConnectorError as exc:
        raise ConnectorError(vault.scrub(connector, str(exc)), status=exc.status) from None
    except DatabaseError:
        raise  # our own database: let the task retry rather than fail the action
    except Exception as exc:
        message = vault.scrub(connector, f"{type(exc).__name__}: {exc}")
        log.error("connector %s failed unexpectedly on %s: %s", connector.slug, operation.key,
                  message)  # fmt: skip
        raise ConnectorError(
            f"{connector.name} failed unexpectedly ({type(exc).__name__})."
        ) from None
    return result
