"""Operations from an OpenAPI 3 document: one per path and method.

``operationId`` becomes the slug (camelCase to kebab-case), ``summary`` the name, GET and
HEAD are reads, DELETE a delete, anything else a write. Path and query parameters and the
JSON request body's properties become the parameter schema (local ``$ref``s resolved); the
method, path, query names and body layout go in ``Operation.config`` for ``rest.py``.
"""

import copy
import json
import re

import requests
import yaml
from django.utils.text import slugify

from autonomy.connectors import outbound
from autonomy.models import Effect

METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
FETCH_FAILED = (
    "The document could not be fetched from this URL (it must be an http(s) URL the connector "
    "guard allows, answering 200 without a redirect)."
)


class OpenAPIError(ValueError):
    """The document is not an OpenAPI 3 document we can read; the message says why."""


def load(document: dict | str | bytes) -> dict:
    if isinstance(document, bytes):
        document = document.decode("utf-8", errors="replace")
    if isinstance(document, str):
        try:
            document = json.loads(document)
        except ValueError:
            try:
                document = yaml.safe_load(document)
            except yaml.YAMLError:
                # Not the parser's text: it would quote what an URL fetch returned.
                raise OpenAPIError("The document is neither JSON nor YAML.") from None
    if not isinstance(document, dict) or not str(document.get("openapi", "")).startswith("3"):
        raise OpenAPIError("Not an OpenAPI 3 document (no 'openapi: 3.x' field).")
    if not isinstance(document.get("paths"), dict):
        raise OpenAPIError("The document has no 'paths'.")
    return document


def fetch(url: str, *, timeout: float = 10.0) -> str:
    """The document at ``url`` (http or https only, through the outbound guard), at most 5 MB.

    Every failure to fetch is the same error, whatever the host's state (refused by the guard,
    closed port, timeout, redirect, an HTTP error), so an import never works as a port scanner.
    """
    try:
        with outbound.session() as session:
            with session.get(url, timeout=timeout, stream=True, allow_redirects=False) as response:
                if response.is_redirect or response.status_code != 200:
                    raise OpenAPIError(FETCH_FAILED)
                content = response.raw.read(MAX_DOCUMENT_BYTES + 1, decode_content=True)
    except (requests.RequestException, outbound.OutboundRefused, ValueError, OSError):
        raise OpenAPIError(FETCH_FAILED) from None
    if len(content) > MAX_DOCUMENT_BYTES:
        raise OpenAPIError("The document is larger than 5 MB.")
    return content.decode("utf-8", errors="replace")


def _pointer(document: dict, ref: str):
    if not ref.startswith("#/"):
        raise OpenAPIError(f"Only local $refs are supported, not {ref!r}.")
    node = document
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            raise OpenAPIError(f"Unresolvable $ref {ref!r}.")
        node = node[part]
    return node


def resolve(document: dict, node, _seen: tuple = ()):
    """``node`` with local $refs inlined; a recursive reference becomes ``{}`` (anything)."""
    if isinstance(node, list):
        return [resolve(document, item, _seen) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        ref = node["$ref"]
        if ref in _seen:
            return {}
        return resolve(document, _pointer(document, ref), (*_seen, ref))
    out = {k: resolve(document, v, _seen) for k, v in node.items()}
    if out.pop("nullable", False) and isinstance(out.get("type"), str):  # OpenAPI 3.0
        out["type"] = [out["type"], "null"]
    return out


def _slug(op: dict, method: str, path: str) -> str:
    raw = op.get("operationId") or f"{method}-{path}"
    kebab = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", raw)
    return slugify(kebab.replace("_", "-").replace("/", "-"))[:80].strip("-")


def _json_schema(content: dict | None) -> dict | None:
    for media, body in (content or {}).items():
        if media.split(";")[0].strip().endswith("json"):
            return body.get("schema") or {}
    return None


def operation_specs(document: dict) -> list[dict]:
    """One dict per operation: slug, name, description, effect, params_schema, config."""
    specs = []
    for path, item in document["paths"].items():
        item = resolve(document, item)
        shared = item.get("parameters") or []
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, dict):
                continue
            params = {
                (p.get("in"), p.get("name")): p for p in shared + (op.get("parameters") or [])
            }
            properties, required, query = {}, [], []
            for (where, name), param in params.items():
                if where not in ("path", "query") or not name:
                    continue  # headers and cookies are the connector's business, not an agent's
                properties[name] = copy.deepcopy(param.get("schema") or {"type": "string"})
                if param.get("description"):
                    properties[name].setdefault("description", param["description"])
                if where == "path" or param.get("required"):
                    required.append(name)
                if where == "query":
                    query.append(name)
            config = {"method": method.upper(), "path": path}
            body = op.get("requestBody") or {}
            body_schema = _json_schema(body.get("content"))
            if body_schema is not None:
                if body_schema.get("type", "object") == "object" and "properties" in body_schema:
                    properties.update(body_schema["properties"])
                    required += [r for r in body_schema.get("required", []) if r not in required]
                else:
                    properties["body"] = body_schema
                    config["body_param"] = "body"
                    if body.get("required"):
                        required.append("body")
            if query and method not in ("get", "head", "delete", "options"):
                config["query"] = query
            schema = {"type": "object", "properties": properties, "additionalProperties": False}
            if required:
                schema["required"] = required
            effect = {"get": Effect.READ, "head": Effect.READ, "options": Effect.READ}.get(
                method, Effect.DELETE if method == "delete" else Effect.WRITE
            )
            slug = _slug(op, method, path)
            specs.append(
                {
                    "slug": slug,
                    "name": (op.get("summary") or op.get("operationId") or slug)[:160],
                    "description": op.get("description") or "",
                    "effect": effect,
                    "params_schema": schema,
                    "config": config,
                }
            )
    return specs
