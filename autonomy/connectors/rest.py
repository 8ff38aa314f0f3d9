"""HTTP / REST: an operation is a method and a path template on the connector's base URL.

Connector ``config``: ``base_url``, ``timeout_seconds`` (10), ``retries`` (2, on 5xx and
connection errors only), ``backoff_seconds`` (0.2, doubled per retry) and ``auth``:
``{"type": "bearer" | "header" | "basic", "secret": <secret name>, "header": <name, for
header>, "username": <for basic>}``. Operation ``config``: ``method``, ``path`` (``{name}``
placeholders, filled URL-quoted from the parameters), ``query`` (parameter names sent in the
query string of a request with a body) and ``body_param`` (one parameter that is the whole
body); the other parameters go in the query string (GET, HEAD, DELETE) or a JSON body.

Every request carries ``Idempotency-Key: <action id>``, so a retried or redelivered call is
one side effect at a system that honours it; a finished call's answer is also kept as a
receipt, and a redelivery is answered from it without calling again.
"""

import json
import logging
import re
import threading
import time
from urllib.parse import quote

import requests

from autonomy.connectors import outbound, receipts, vault
from autonomy.connectors.errors import ConnectorError
from autonomy.models import Connector, Effect, Operation

log = logging.getLogger(__name__)

MAX_RESPONSE_BYTES = 2 * 1024 * 1024
EXCERPT_CHARS = 200
PLACEHOLDER = re.compile(r"\{([^{}/]+)\}")
BODYLESS = frozenset({"GET", "HEAD", "DELETE", "OPTIONS"})

_local = threading.local()


def _session() -> requests.Session:
    """One pooled session per thread, every connection through the outbound guard (pinned to
    the address it checked), with no proxy or ~/.netrc from the environment."""
    session = getattr(_local, "session", None)
    if session is None:
        session = _local.session = outbound.session()
    return session


def _query_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return json.dumps(value, separators=(",", ":"))
    return value


def request_parts(operation: Operation, params: dict) -> tuple[str, str, dict, object]:
    """(method, path, query, json body or None) for one call."""
    config = operation.config or {}
    default_method = "GET" if operation.effect == Effect.READ else "POST"
    method = str(config.get("method") or default_method).upper()
    used: set[str] = set()

    def fill(match: re.Match) -> str:
        name = match.group(1)
        value = params.get(name)
        if value is None:
            raise ConnectorError(f"Parameter {name!r} is needed in the path of {operation.key}.")
        text = _query_value(value) if isinstance(value, bool) else str(value)
        if text in ("", ".", ".."):
            raise ConnectorError(f"Parameter {name!r} is not a valid path segment.")
        used.add(name)
        return quote(text, safe="")

    path = PLACEHOLDER.sub(fill, config.get("path") or f"/{operation.slug}")
    rest = {k: v for k, v in params.items() if k not in used}
    if method in BODYLESS:
        return method, path, {k: _query_value(v) for k, v in rest.items()}, None
    in_query = set(config.get("query") or ())
    query = {k: _query_value(v) for k, v in rest.items() if k in in_query}
    body = {k: v for k, v in rest.items() if k not in in_query}
    if config.get("body_param"):
        body = body.get(config["body_param"])
    return method, path, query, body


def _auth(connector: Connector) -> tuple[dict, tuple | None]:
    auth = connector.config.get("auth") or {}
    kind = auth.get("type")
    if not kind:
        return {}, None
    secret = vault.secret_value(connector, auth.get("secret") or "token")
    if kind == "bearer":
        return {"Authorization": f"Bearer {secret}"}, None
    if kind == "header":
        return {auth.get("header") or "X-API-Key": secret}, None
    if kind == "basic":
        return {}, (auth.get("username") or "", secret)
    raise ConnectorError(f"Connector {connector.slug!r} has an unknown auth type {kind!r}.")


def _read(response: requests.Response, system: str) -> bytes:
    chunks, size = [], 0
    for chunk in response.iter_content(64 * 1024):
        size += len(chunk)
        if size > MAX_RESPONSE_BYTES:
            response.close()
            raise ConnectorError(f"{system} answered more than {MAX_RESPONSE_BYTES} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)


def _send(system: str, method: str, url: str, *, retries: int, backoff: float, **kwargs):
    """The response (a 5xx only once retries are spent); connection errors after the last
    attempt become a ConnectorError naming the error type, never its text (which can quote
    request headers)."""
    failure = ""
    for attempt in range(retries + 1):
        if attempt:
            time.sleep(min(backoff * 2 ** (attempt - 1), 30.0))
        try:
            # Never follow a redirect: it would carry the auth header (and a re-sent body) to
            # whatever host the answer names. A 3xx is an error the operator must look at.
            response = _session().request(method, url, stream=True, allow_redirects=False, **kwargs)
        except (requests.ConnectionError, requests.Timeout) as exc:
            failure = type(exc).__name__
            log.warning("%s: %s %s failed (%s), attempt %d", system, method, url, failure, attempt)
            continue
        except (requests.RequestException, ValueError) as exc:
            raise ConnectorError(
                f"{system}: the request could not be sent ({type(exc).__name__})."
            ) from None
        if response.status_code < 500 or attempt == retries:
            return response
        log.warning("%s: %s %s answered %s, attempt %d", system, method, url,
                    response.status_code, attempt)  # fmt: skip
        response.close()
    raise ConnectorError(f"{system} could not be reached after {retries + 1} attempts ({failure}).")


def execute(*, operation: Operation, params: dict, idempotency_key: str) -> dict:
    done = receipts.finished(idempotency_key)
    if done is not None:
        return {**done.result, "replayed": True}
    connector = operation.connector
    config = connector.config
    method, path, query, body = request_parts(operation, params)
    headers, basic = _auth(connector)
    headers.update({"Idempotency-Key": idempotency_key, "Accept": "application/json"})
    url = str(config["base_url"]).rstrip("/") + "/" + path.lstrip("/")
    timeout = float(config.get("timeout_seconds") or 10)
    started = time.monotonic()
    response = _send(
        connector.name, method, url,
        retries=max(0, int(config.get("retries", 2))),
        backoff=float(config.get("backoff_seconds", 0.2)),
        params=query or None, json=body, headers=headers, auth=basic, timeout=timeout,
    )  # fmt: skip
    with response:
        content = _read(response, connector.name)
    text = content.decode(response.encoding or "utf-8", errors="replace")
    if not 200 <= response.status_code < 300:
        # Scrub before cutting: a secret cut in two would slip past the scrub in ``call``.
        excerpt = " ".join(vault.scrub(connector, text).split())[:EXCERPT_CHARS]
        raise ConnectorError(
            f"{connector.name} answered {response.status_code} {response.reason} to {method} "
            f"{path}: {excerpt}",
            status=response.status_code,
        )
    try:
        data = json.loads(text) if text.strip() else None
    except ValueError:
        data = text
    result = {"status": response.status_code, "data": data}
    receipts.record(
        operation=operation, params=params, idempotency_key=idempotency_key, result=result
    )
    log.debug("%s %s %s -> %s in %.0f ms", connector.slug, method, path, response.status_code,
              (time.monotonic() - started) * 1000)  # fmt: skip
    return {**result, "replayed": False}
