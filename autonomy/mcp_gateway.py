"""The MCP gateway at ``/mcp/``: agents on any framework reach the gate as MCP tools.

Streamable HTTP, answered as plain JSON (``application/json``, which the transport allows for
every request): one POST per JSON-RPC message. It is a DRF view rather than the SDK's ASGI app
because the portal runs under WSGI (runserver, gunicorn) and the view reuses the API's
authentication (agent tokens and IdP bearer tokens), its JSON error bodies and its threads.

- ``initialize`` issues an ``Mcp-Session-Id``: a signed, stateless value bound to the agent, so
  any web process answers the session's next request; later requests must carry it.
- ``tools/list`` lists exactly the operations the agent is granted (on the operation or its
  connector, to its service user or its role), plus ``autonomy.action_status``.
- ``tools/call`` goes through the gate (``actions.action_request``); an allowed or approved
  action is awaited up to ``AUTONOMY_MCP_WAIT_SECONDS``; a denial is a tool error naming the
  reasons; an unknown or ungranted tool is a tool error too, never a protocol failure.
"""

import json
import secrets
import time
import uuid

from django.conf import settings
from django.core import signing
from django.http import HttpResponse, JsonResponse
from django.utils.module_loading import import_string
from rest_framework.authentication import SessionAuthentication
from rest_framework.views import APIView

from agents.api.permissions import IsAgent, request_agent
from agents.models import Credential, Scope
from autonomy import actions, grants, masking
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionRequest, ActionStatus

PROTOCOL_VERSIONS = ("2025-11-25", "2025-06-18", "2025-03-26")
SESSION_HEADER = "Mcp-Session-Id"
SESSION_SALT = "autonomy.mcp-session"
STATUS_TOOL = "autonomy.action_status"
DONE = frozenset({ActionStatus.SUCCEEDED, ActionStatus.FAILED, ActionStatus.CANCELLED,
                  ActionStatus.DENIED, ActionStatus.SHADOWED})  # fmt: skip

# JSON-RPC error codes
PARSE_ERROR, INVALID_REQUEST, METHOD_NOT_FOUND, INVALID_PARAMS = -32700, -32600, -32601, -32602

STATUS_TOOL_SPEC = {
    "name": STATUS_TOOL,
    "title": "Action status",
    "description": "Look up an action this agent asked for (one waiting for approval, say) and "
    "return its outcome once it has one.",
    "inputSchema": {
        "type": "object",
        "properties": {"action_id": {"type": "string", "description": "The action's id."}},
        "required": ["action_id"],
    },
}


def _authentication_classes():
    """The API's authenticators without the session cookie: an MCP client sends a bearer."""
    return [
        cls
        for cls in map(import_string, settings.REST_FRAMEWORK["DEFAULT_AUTHENTICATION_CLASSES"])
        if not issubclass(cls, SessionAuthentication)
    ]


class RpcError(Exception):
    def __init__(self, code: int, message: str, http_status: int = 200, data=None):
        super().__init__(message)
        self.code, self.message, self.http_status, self.data = code, message, http_status, data


def _reply(message_id, result) -> dict:
    return {"jsonrpc": "2.0", "id": message_id, "result": result}


def _rpc_error(message_id, error: RpcError) -> JsonResponse:
    body = {"code": error.code, "message": error.message}
    if error.data is not None:
        body["data"] = error.data
    return JsonResponse(
        {"jsonrpc": "2.0", "id": message_id, "error": body}, status=error.http_status
    )


class MCPGatewayView(APIView):
    schema = None  # JSON-RPC, described by MCP itself (tools/list), not by the REST schema
    authentication_classes = _authentication_classes()
    permission_classes = [IsAgent(scope=Scope.ACTIONS_WRITE)]

    def get(self, request):
        # No server-initiated stream: every answer comes on its POST.
        return HttpResponse(status=405, headers={"Allow": "POST"})

    def delete(self, request):
        # Sessions are stateless signed values; there is nothing to end.
        return HttpResponse(status=405, headers={"Allow": "POST"})

    def post(self, request):
        message_id = None
        try:
            message = _parse(request.body)
            message_id = message.get("id")
            method = message.get("method")
            if method is None or "id" not in message:
                # A notification, or a response to a request we never send.
                if method != "initialize":
                    self._session(request)
                return HttpResponse(status=202)
            agent = request_agent(request)
            if method == "initialize":
                return self._initialize(message, agent)
            session = self._session(request)
            result = self._dispatch(request, agent, session, message)
        except RpcError as error:
            return _rpc_error(message_id, error)
        return JsonResponse(_reply(message_id, result))

    # --- protocol -------------------------------------------------------------------------

    def _initialize(self, message: dict, agent) -> JsonResponse:
        params = message.get("params") or {}
        asked = params.get("protocolVersion")
        version = asked if asked in PROTOCOL_VERSIONS else PROTOCOL_VERSIONS[0]
        session = signing.dumps({"a": str(agent.pk), "n": secrets.token_hex(8)}, salt=SESSION_SALT)
        result = {
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": False}},
            "serverInfo": {"name": "autonomy-os", "title": "Autonomy OS gateway", "version": "1"},
            "instructions": "Each tool is an operation you are granted; every call goes through "
            "the Autonomy OS gate and may wait for a person's approval.",
        }
        return JsonResponse(_reply(message["id"], result), headers={SESSION_HEADER: session})

    def _session(self, request) -> dict:
        value = request.headers.get(SESSION_HEADER)
        if not value:
            raise RpcError(INVALID_REQUEST, "Mcp-Session-Id is required; initialize first.", 400)
        try:
            session = signing.loads(value, salt=SESSION_SALT)
        except signing.BadSignature:
            raise RpcError(INVALID_REQUEST, "Unknown session; initialize again.", 404) from None
        if session.get("a") != str(request_agent(request).pk):
            raise RpcError(INVALID_REQUEST, "Unknown session; initialize again.", 404)
        version = request.headers.get("Mcp-Protocol-Version")
        if version and version not in PROTOCOL_VERSIONS:
            raise RpcError(INVALID_REQUEST, f"Unsupported protocol version {version!r}.", 400)
        return session

    def _dispatch(self, request, agent, session: dict, message: dict) -> dict:
        method, params = message["method"], message.get("params") or {}
        if not isinstance(params, dict):
            raise RpcError(INVALID_PARAMS, "params must be an object.")
        if method == "ping":
            return {}
        if method == "tools/list":
            return {"tools": tool_list(agent=agent)}
        if method == "tools/call":
            name, arguments = params.get("name"), params.get("arguments") or {}
            if not isinstance(name, str) or not isinstance(arguments, dict):
                raise RpcError(INVALID_PARAMS, "tools/call needs a name and object arguments.")
            meta = params.get("_meta") or {}
            if name == STATUS_TOOL:
                return action_status_result(agent=agent, action_id=arguments.get("action_id"))
            credential = request.auth if isinstance(request.auth, Credential) else None
            key = meta.get("idempotency_key") or f"mcp:{session['n']}:{message['id']}"
            return tool_call(
                agent=agent,
                credential=credential,
                name=name,
                arguments=arguments,
                reason=str(meta.get("reason") or "Called through the MCP gateway."),
                idempotency_key=str(key)[:200],
            )
        raise RpcError(METHOD_NOT_FOUND, f"Method not found: {method}")


def _parse(body: bytes) -> dict:
    try:
        message = json.loads(body or b"")
    except ValueError:
        raise RpcError(PARSE_ERROR, "The body is not JSON.", 400) from None
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0":
        raise RpcError(INVALID_REQUEST, "One JSON-RPC 2.0 message per POST.", 400)
    return message


# --- tools ---------------------------------------------------------------------------------


def tool_list(*, agent) -> list[dict]:
    tools = [
        {
            "name": op.key,
            "title": f"{op.connector.name}: {op.name}",
            "description": op.description or op.name,
            "inputSchema": _input_schema(op.params_schema),
        }
        for op in grants.operations_callable(agent=agent)
    ]
    return [*tools, STATUS_TOOL_SPEC]


def _input_schema(schema) -> dict:
    if isinstance(schema, dict) and schema.get("type") == "object":
        return schema
    return {"type": "object"}


def _tool_error(code: str, message: str, **data) -> dict:
    body = {"error": {"code": str(code), "message": message, **data}}
    return {
        "content": [{"type": "text", "text": f"{code}: {message}"}],
        "structuredContent": body,
        "isError": True,
    }


def tool_call(*, agent, credential, name, arguments, reason, idempotency_key) -> dict:
    try:
        action, _ = actions.action_request(
            agent=agent,
            operation_key=name,
            params=arguments,
            reason=reason,
            credential=credential,
            idempotency_key=idempotency_key,
        )
    except DomainError as exc:
        return _tool_error(exc.code, exc.message, details=exc.details)
    return _action_result(_await(action.pk), viewer=agent.service_user)


def action_status_result(*, agent, action_id) -> dict:
    try:
        pk = uuid.UUID(str(action_id))
    except ValueError:
        pk = None
    action = ActionRequest.objects.filter(pk=pk, agent=agent).first() if pk else None
    if action is None:
        return _tool_error(ErrorCode.NOT_FOUND, "No such action of this agent.")
    return _action_result(_await(action.pk), viewer=agent.service_user)


def _await(action_id) -> ActionRequest:
    """Poll the action until it settles or the bound passes (it runs on a worker, or waits
    for people)."""
    deadline = time.monotonic() + settings.AUTONOMY_MCP_WAIT_SECONDS
    interval = 0.01
    while True:
        action = ActionRequest.objects.select_related(
            "operation__connector", "approval__approver_group"
        ).get(pk=action_id)
        if action.status in DONE or time.monotonic() >= deadline:
            return action
        time.sleep(interval)
        interval = min(interval * 1.25, 0.25)


def _action_result(action: ActionRequest, *, viewer) -> dict:
    """What the tool answers. Only the agent's own actions reach here; its result goes
    through ``autonomy.masking`` like every output (the sender sees its own values)."""
    summary = {
        "action_id": str(action.pk),
        "operation": action.operation.key,
        "status": action.status,
        "decision": action.verdict,
        "reasons": action.reasons,
        "autonomy_level": action.autonomy_level,
        "executed": action.executed,
    }
    if action.status == ActionStatus.SHADOWED:
        return {
            "content": [{"type": "text", "text": (
                f"Shadow: the gate decided {action.verdict} and recorded it (action "
                f"{action.pk}); it was not executed."
            )}],
            "structuredContent": summary,
            "isError": False,
        }  # fmt: skip
    if action.status == ActionStatus.SUCCEEDED:
        outcome = masking.outcome_for(action, viewer=viewer)
        summary["outcome"] = outcome
        return {
            "content": [{"type": "text", "text": json.dumps(outcome, default=str)}],
            "structuredContent": summary,
            "isError": False,
        }
    if action.status in (ActionStatus.DENIED, ActionStatus.CANCELLED):
        reasons = [r for r in action.reasons if r.get("code") != ErrorCode.ALLOWED]
        text = "; ".join(f"{r.get('code')}: {r.get('message')}" for r in reasons)
        verb = "denied" if action.status == ActionStatus.DENIED else "cancelled"
        return {
            "content": [{"type": "text", "text": f"The gate {verb} this call. {text}"}],
            "structuredContent": summary,
            "isError": True,
        }
    if action.status == ActionStatus.FAILED:
        summary["error"] = action.error
        message = (action.error or {}).get("message", "The call failed.")
        return {
            "content": [{"type": "text", "text": f"execution_failed: {message}"}],
            "structuredContent": summary,
            "isError": True,
        }
    if action.status == ActionStatus.PENDING_APPROVAL:
        approval = getattr(action, "approval", None)
        if approval is not None:
            summary["approval"] = {
                "id": str(approval.pk),
                "approvers": approval.approver_group.name,
                "quorum": approval.quorum,
                "expires_at": approval.expires_at.isoformat(),
            }
        text = (
            f"Waiting for approval (action {action.pk}). Ask again with "
            f"{STATUS_TOOL} and this action id for the result."
        )
    else:
        text = f"The action {action.pk} is {action.status}; ask {STATUS_TOOL} for its result."
    return {
        "content": [{"type": "text", "text": text}],
        "structuredContent": summary,
        "isError": False,
    }
