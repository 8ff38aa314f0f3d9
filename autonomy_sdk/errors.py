"""Typed errors mirroring the API's stable error codes (``autonomy/errors.py``).

Every error body is ``{"error": {"code", "message", "details"}}``; the SDK raises the class
mapped from its code, so an agent can ``except GrantMissing`` or ``except PermissionDenied``.
A test checks that every code the server defines is mapped here.
"""

from typing import Any


class AutonomyError(Exception):
    """An error answer of the API (or of the SDK itself, with ``status`` 0)."""

    def __init__(self, code: str, message: str, details: dict | None = None, status: int = 0):
        super().__init__(f"{code}: {message}")
        self.code, self.message, self.details, self.status = code, message, details or {}, status


class BadRequest(AutonomyError):
    """The request is malformed or its values are invalid (400, 413, 415)."""


class AuthenticationFailed(AutonomyError):
    """No usable credential (401)."""


class PermissionDenied(AutonomyError):
    """Authenticated, but not allowed (403)."""


class NotFound(AutonomyError):
    pass


class Conflict(AutonomyError):
    """The state does not allow it now (409): already decided, not yours, not held ..."""


class RateLimited(AutonomyError):
    pass


class ServerError(AutonomyError):
    """The server failed (5xx) even after retries."""


class ActionDenied(AutonomyError):
    """The gate (or a person) said no. ``reasons`` says why, as the gate wrote it."""

    def __init__(self, action: Any):
        reasons = action.reasons or []
        first = next((r for r in reasons if r.get("code") != "allowed"), {}) or {}
        super().__init__(
            first.get("code", "denied"),
            first.get("message", "The action was denied."),
            {"action_id": action.id},
            status=200,
        )
        self.action, self.reasons = action, reasons


class ActionFailed(AutonomyError):
    """The action was allowed but the system it called failed."""

    def __init__(self, action: Any):
        error = action.error or {}
        super().__init__(
            "action_failed",
            error.get("message", "The action failed."),
            {"action_id": action.id, "error": error},
            status=200,
        )
        self.action = action


class WaitTimeout(AutonomyError):
    """``act(wait=True)`` gave up waiting (the action may still finish; look it up by id)."""


def _classes(names: str, cls: type) -> dict[str, type]:
    return {name: cls for name in names.split()}


# Code → class, for every code of autonomy/errors.py.
CODES: dict[str, type[AutonomyError]] = {
    **_classes(
        "malformed_json json_too_deep validation_failed unknown_field payload_too_large"
        " unsupported_media_type"
        " method_not_allowed not_acceptable operation_unknown params_invalid params_too_large"
        " template_invalid context_invalid bundle_invalid",
        BadRequest,
    ),
    **_classes(
        "not_authenticated authentication_failed credential_invalid credential_expired"
        " credential_revoked oidc_token_invalid oidc_client_unknown",
        AuthenticationFailed,
    ),
    **_classes(
        "permission_denied scope_missing not_an_agent agent_retired agent_paused"
        " agent_pending_approval agent_quarantined not_an_approver decided_earlier_stage"
        " task_not_yours link_invalid"
        " fields_not_permitted"
        " stop_lift_denied handoff_target_ineligible",
        PermissionDenied,
    ),
    "not_found": NotFound,
    "policy_version_unknown": NotFound,
    **_classes(
        "illegal_transition conflict idempotency_key_reused approval_not_pending already_decided"
        " changes_denied template_immutable template_not_published run_not_active"
        " step_not_actionable task_not_available claim_not_held claim_held operation_disabled"
        " rollout_criteria_not_met rollout_no_next_wave rollout_not_started rollout_inactive"
        " rollout_wave_moved suggestion_not_open policy_history_immutable"
        " bundle_live_changed",
        Conflict,
    ),
    "rate_limited": RateLimited,
    "internal_error": ServerError,
    "database_unavailable": ServerError,  # 503 with Retry-After: the same request again later
    # Reasons of a decision; they reach an agent inside ActionDenied, not as an HTTP error.
    **_classes(
        "grant_missing policy_forbid policy_no_permit policy_requires_approval risk_too_high"
        " risk_needs_approval budget_exceeded allowed approval_gate"
        " autonomy_shadow autonomy_supervised autonomy_autonomous"
        " content_blocked content_needs_approval content_redacted content_logged"
        " standing_approval standing_approval_used_up",
        ActionDenied,
    ),
}
_BY_STATUS = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: PermissionDenied,
    404: NotFound,
    409: Conflict,
    413: BadRequest,
    415: BadRequest,
    429: RateLimited,
}


def from_response(status: int, body: Any) -> AutonomyError:
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else AutonomyError)
        return cls("http_error", f"HTTP {status}", {"body": str(body)[:500]}, status)
    code = str(error.get("code", "unknown"))
    cls = CODES.get(code)
    if cls is None or cls is ActionDenied:
        cls = _BY_STATUS.get(status, ServerError if status >= 500 else AutonomyError)
    return cls(code, str(error.get("message", "")), error.get("details") or {}, status)
