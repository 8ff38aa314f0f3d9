"""MCP client: an operation is a tool on a remote MCP server (streamable HTTP).

Connector ``config``: ``url`` (the server's MCP endpoint), ``timeout_seconds`` (30) and
``auth``: ``{"type": "bearer", "secret": <secret name>}`` (the token from the vault).
Operation ``config``: ``tool`` (the tool's name; the operation's slug when absent).

Calls use the official ``mcp`` client (``streamable_http_client`` + ``ClientSession``), run
on the sync executor with ``anyio.run``. MCP has no idempotency key of its own, so a call is
recorded before it is made (``receipts.claim``): a redelivery answers from the receipt, or
refuses when the first attempt's outcome is unknown, and never calls the tool twice.
"""

import json
import logging

import anyio
import httpx2
from mcp import ClientSession, types
from mcp.client.streamable_http import streamable_http_client

from autonomy.connectors import outbound, receipts, vault
from autonomy.connectors.errors import ConnectorError
from autonomy.models import Connector, Operation

MAX_TEXT_CHARS = 64 * 1024

log = logging.getLogger(__name__)


def _headers(connector: Connector) -> dict[str, str]:
    auth = connector.config.get("auth") or {}
    if not auth.get("type"):
        return {}
    if auth["type"] != "bearer":
        raise ConnectorError(f"Connector {connector.slug!r} has an unknown auth type.")
    token = vault.secret_value(connector, auth.get("secret") or "token")
    return {"Authorization": f"Bearer {token}"}


def _timeout(connector: Connector) -> float:
    return float(connector.config.get("timeout_seconds") or 30)


async def _with_session(url: str, headers: dict, timeout: float, work):
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(timeout)) as http:
        async with streamable_http_client(url, http_client=http) as (
            read,
            write,
        ):
            async with ClientSession(read, write, read_timeout_seconds=timeout) as session:
                await session.initialize()
                with anyio.fail_after(timeout):
                    return await work(session)


def _run(connector: Connector, work):
    try:
        # Secrets are read here, in sync code: the ORM is not for the event loop.
        headers, url = _headers(connector), str(connector.config["url"])
        outbound.check_url(url)  # checked again on every call: a DNS answer can change
        return anyio.run(_with_session, url, headers, _timeout(connector), work)
    except ConnectorError:
        raise
    except TimeoutError:
        raise ConnectorError(
            f"{connector.name} did not answer within {_timeout(connector):.0f} s."
        ) from None
    except BaseException as exc:  # noqa: BLE001 - task groups wrap errors in groups
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        cause = exc.exceptions[0] if isinstance(exc, BaseExceptionGroup) else exc
        log.warning("%s: MCP call failed: %s", connector.slug, vault.scrub(connector, repr(cause)))
        raise ConnectorError(
            f"{connector.name}: the MCP call failed ({type(cause).__name__})."
        ) from None


def list_tools(connector: Connector) -> list[dict]:
    """The server's tools as plain dicts (name, title, description, inputSchema)."""

    async def work(session):
        tools, cursor = [], None
        while True:
            page = await session.list_tools(
                params=types.PaginatedRequestParams(cursor=cursor) if cursor else None
            )
            tools.extend(page.tools)
            cursor = page.next_cursor
            if not cursor:
                return tools

    return [
        tool.model_dump(by_alias=True, mode="json", exclude_none=True)
        for tool in _run(connector, work)
    ]


def _answer(result) -> dict:
    texts = [block.text for block in result.content if getattr(block, "type", "") == "text"]
    data = result.structured_content
    if data is None:
        joined = "\n".join(texts)[:MAX_TEXT_CHARS]
        try:
            data = json.loads(joined) if joined.strip() else None
        except ValueError:
            data = joined
    return {"data": data, "is_error": bool(result.is_error), "text": "\n".join(texts)}


def execute(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    connector = operation.connector
    receipt = receipts.claim(operation=operation, params=params, idempotency_key=idempotency_key)
    if receipt is not None:
        return receipts.replay_or_refuse(receipt, system=connector.name)
    tool = (operation.config or {}).get("tool") or operation.slug
    sent = False

    async def work(session):
        nonlocal sent
        sent = True
        return await session.call_tool(tool, params)

    try:
        result = _run(connector, work)
    except ConnectorError:
        # Failed before the tool was asked (unreachable, refused the session): certainly
        # nothing happened, so a retry may run. After that the outcome is unknown: keep it.
        if not sent:
            receipts.release(idempotency_key=idempotency_key)
        raise
    answer = _answer(result)
    if answer["is_error"]:
        receipts.release(idempotency_key=idempotency_key)
        excerpt = vault.scrub(connector, answer["text"])[:200]
        raise ConnectorError(f"{connector.name}: the tool {tool!r} answered an error: {excerpt}")
    result = {"status": 200, "data": answer["data"]}
    receipts.finish(idempotency_key=idempotency_key, result=result)
    return {**result, "replayed": False}
