"""Stable error codes and the domain exception that carries them.

Codes are defined once here; the API, the SDK and (later) the MCP gateway use the same list.
"""

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    # request shape
    MALFORMED_JSON = "malformed_json"
    VALIDATION_FAILED = "validation_failed"
    UNKNOWN_FIELD = "unknown_field"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    JSON_TOO_DEEP = "json_too_deep"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    NOT_ACCEPTABLE = "not_acceptable"
    NOT_FOUND = "not_found"
    RATE_LIMITED = "rate_limited"
    # identity
    NOT_AUTHENTICATED = "not_authenticated"
    AUTHENTICATION_FAILED = "authentication_failed"
    CREDENTIAL_INVALID = "credential_invalid"
    CREDENTIAL_EXPIRED = "credential_expired"
    CREDENTIAL_REVOKED = "credential_revoked"
    AGENT_RETIRED = "agent_retired"
    OIDC_TOKEN_INVALID = "oidc_token_invalid"
    OIDC_CLIENT_UNKNOWN = "oidc_client_unknown"
    PERMISSION_DENIED = "permission_denied"
    SCOPE_MISSING = "scope_missing"
    NOT_AN_AGENT = "not_an_agent"
    # registry lifecycle
    ILLEGAL_TRANSITION = "illegal_transition"
    CONFLICT = "conflict"
    FIELDS_NOT_PERMITTED = "fields_not_permitted"
    STOP_LIFT_DENIED = "stop_lift_denied"
    # the gate
    OPERATION_UNKNOWN = "operation_unknown"
    OPERATION_DISABLED = "operation_disabled"
    PARAMS_INVALID = "params_invalid"
    PARAMS_TOO_LARGE = "params_too_large"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    AGENT_PAUSED = "agent_paused"
    AGENT_PENDING_APPROVAL = "agent_pending_approval"
    AGENT_QUARANTINED = "agent_quarantined"
    GRANT_MISSING = "grant_missing"
    POLICY_FORBID = "policy_forbid"
    POLICY_NO_PERMIT = "policy_no_permit"
    POLICY_REQUIRES_APPROVAL = "policy_requires_approval"
    RISK_TOO_HIGH = "risk_too_high"
    RISK_NEEDS_APPROVAL = "risk_needs_approval"
    BUDGET_EXCEEDED = "budget_exceeded"
    ALLOWED = "allowed"
    AUTONOMY_SHADOW = "autonomy_shadow"
    AUTONOMY_SUPERVISED = "autonomy_supervised"
    AUTONOMY_AUTONOMOUS = "autonomy_autonomous"
    # standing approvals (``autonomy.standing``)
    STANDING_APPROVAL = "standing_approval"
    STANDING_APPROVAL_USED_UP = "standing_approval_used_up"
    # content rules (``autonomy.content``): one code per effect
    CONTENT_BLOCKED = "content_blocked"
    CONTENT_NEEDS_APPROVAL = "content_needs_approval"
    CONTENT_REDACTED = "content_redacted"
    CONTENT_LOGGED = "content_logged"
    # approvals
    NOT_AN_APPROVER = "not_an_approver"
    APPROVAL_NOT_PENDING = "approval_not_pending"
    ALREADY_DECIDED = "already_decided"
    DECIDED_EARLIER_STAGE = "decided_earlier_stage"
    CHANGES_DENIED = "changes_denied"
    LINK_INVALID = "link_invalid"
    APPROVAL_GATE = "approval_gate"
    SUGGESTION_NOT_OPEN = "suggestion_not_open"
    # workflows and coordination
    TEMPLATE_INVALID = "template_invalid"
    TEMPLATE_IMMUTABLE = "template_immutable"
    TEMPLATE_NOT_PUBLISHED = "template_not_published"
    CONTEXT_INVALID = "context_invalid"
    RUN_NOT_ACTIVE = "run_not_active"
    STEP_NOT_ACTIONABLE = "step_not_actionable"
    TASK_NOT_AVAILABLE = "task_not_available"
    TASK_NOT_YOURS = "task_not_yours"
    CLAIM_NOT_HELD = "claim_not_held"
    CLAIM_HELD = "claim_held"
    HANDOFF_TARGET_INELIGIBLE = "handoff_target_ineligible"
    # rollouts
    ROLLOUT_CRITERIA_NOT_MET = "rollout_criteria_not_met"
    ROLLOUT_NO_NEXT_WAVE = "rollout_no_next_wave"
    ROLLOUT_NOT_STARTED = "rollout_not_started"
    ROLLOUT_INACTIVE = "rollout_inactive"
    ROLLOUT_WAVE_MOVED = "rollout_wave_moved"
    # policy history
    POLICY_HISTORY_IMMUTABLE = "policy_history_immutable"
    POLICY_VERSION_UNKNOWN = "policy_version_unknown"
    # governance bundles (``governance``)
    BUNDLE_INVALID = "bundle_invalid"
    BUNDLE_LIVE_CHANGED = "bundle_live_changed"
    # server
    INTERNAL_ERROR = "internal_error"
    DATABASE_UNAVAILABLE = "database_unavailable"


class DomainError(Exception):
    """Raised by services; the API turns it into ``{"error": {code, message, details}}``."""

    status_code = 400

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        details: dict[str, Any] | None = None,
        status_code: int | None = None,
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details or {}
        if status_code is not None:
            self.status_code = status_code


class IllegalTransition(DomainError):
    status_code = 409

    def __init__(self, *, current: str, target: str):
        super().__init__(
            ErrorCode.ILLEGAL_TRANSITION,
            f"Cannot go from {current!r} to {target!r}.",
            {"current": current, "target": target},
        )
