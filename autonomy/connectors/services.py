"""Use cases of the connector registry: store a secret, import operations from OpenAPI."""

import re

from django.db import transaction

from autonomy import audit
from autonomy.connectors import openapi, vault
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import Connector, ConnectorSecret, Effect, Operation

SECRET_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,59}$")


def connector_secret_set(*, connector: Connector, name: str, value: str, by) -> ConnectorSecret:
    """Store (or replace) one secret, encrypted; the audit record names it, never its value."""
    if not SECRET_NAME.match(name or ""):
        raise DomainError(
            ErrorCode.VALIDATION_FAILED,
            "A secret name is 1-60 lower-case letters, digits, '-' or '_'.",
            {"fields": {"name": ["invalid"]}},
        )
    if not value:
        raise DomainError(ErrorCode.VALIDATION_FAILED, "A secret cannot be empty.")
    with transaction.atomic():
        secret, created = ConnectorSecret.objects.update_or_create(
            connector=connector, name=name, defaults={"ciphertext": vault.encrypt(value)}
        )
        audit.append(
            kind="connector_secret_set",
            actor=getattr(by, "username", "") or "",
            payload={"connector": connector.slug, "name": name, "created": created},
        )
    return secret


def connector_import_openapi(*, connector: Connector, document: dict | str, by) -> list[Operation]:
    """Create or update one operation per path and method of an OpenAPI 3 document.

    Idempotent: a re-import updates what the document describes (name, effect, parameters,
    method and path) and keeps what people curated (sensitivity, data class, flags, enabled,
    other config such as a result schema). Operations the document no longer has are left.
    """
    try:
        specs = openapi.operation_specs(openapi.load(document))
    except openapi.OpenAPIError as exc:
        raise DomainError(ErrorCode.VALIDATION_FAILED, str(exc)) from None
    if not specs:
        raise DomainError(ErrorCode.VALIDATION_FAILED, "The document describes no operations.")
    imported, created_count = [], 0
    with transaction.atomic():
        existing = {op.slug: op for op in Operation.objects.filter(connector=connector)}
        for spec in specs:
            operation = existing.get(spec["slug"])
            if operation is None:
                operation = Operation(
                    connector=connector,
                    slug=spec["slug"],
                    sensitivity=1 if spec["effect"] == Effect.READ else 2,
                )
                created_count += 1
            operation.name = spec["name"]
            operation.description = spec["description"]
            operation.effect = spec["effect"]
            operation.params_schema = spec["params_schema"]
            operation.config = {**(operation.config or {}), **spec["config"]}
            for stale in ("query", "body_param"):
                if stale not in spec["config"]:
                    operation.config.pop(stale, None)
            operation.save()
            existing[operation.slug] = operation
            imported.append(operation)
        audit.append(
            kind="connector_openapi_imported",
            actor=getattr(by, "username", "") or "",
            payload={
                "connector": connector.slug,
                "operations": [op.slug for op in imported],
                "created": created_count,
            },
        )
    return imported


TOOL_SLUG = re.compile(r"[^a-z0-9_-]+")


def _tool_slug(name: str) -> str:
    return TOOL_SLUG.sub("-", name.lower()).strip("-")[:80] or "tool"


def connector_import_mcp_tools(*, connector: Connector, by) -> list[Operation]:
    """Create or update one operation per tool of the connector's MCP server.

    Like the OpenAPI import, a re-import refreshes what the server describes (name,
    description, parameters, tool name) and keeps what people curated.
    """
    from autonomy.connectors import mcp_client

    if not connector.config.get("url"):
        raise DomainError(ErrorCode.VALIDATION_FAILED, "The connector's config has no MCP url.")
    tools = mcp_client.list_tools(connector)
    if not tools:
        raise DomainError(ErrorCode.VALIDATION_FAILED, "The MCP server offers no tools.")
    imported, created_count = [], 0
    with transaction.atomic():
        existing = {op.slug: op for op in Operation.objects.filter(connector=connector)}
        for tool in tools:
            slug = _tool_slug(tool["name"])
            operation = existing.get(slug)
            if operation is None:
                operation = Operation(connector=connector, slug=slug, sensitivity=2)
                created_count += 1
            annotations = tool.get("annotations") or {}
            operation.name = (tool.get("title") or annotations.get("title") or tool["name"])[:160]
            operation.description = tool.get("description") or ""
            # The remote server's "read-only" hint is its claim, not ours: a new operation is a
            # write until a person says otherwise, and a person's choice is never overwritten.
            if operation.pk is None:
                operation.effect = Effect.WRITE
            operation.config = {
                **(operation.config or {}),
                "read_only_hint": bool(annotations.get("readOnlyHint")),
            }
            operation.params_schema = tool.get("inputSchema") or {"type": "object"}
            operation.config = {**(operation.config or {}), "tool": tool["name"]}
            operation.save()
            existing[slug] = operation
            imported.append(operation)
        audit.append(
            kind="connector_mcp_tools_imported",
            actor=getattr(by, "username", "") or "",
            payload={
                "connector": connector.slug,
                "operations": [op.slug for op in imported],
                "created": created_count,
            },
        )
    return imported
