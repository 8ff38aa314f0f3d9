"""/api/v1/actions/ and /api/v1/simulate/: how an agent asks, and how anyone can ask
"what would happen if"."""

import decimal
from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response
from rest_framework.views import APIView

from agents.api.permissions import IsAgent, request_agent
from agents.models import Agent, Scope
from autonomy import actions, conditions, gate, masking
from autonomy.api.serializers import MaskedJSONField, StrictSerializer
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionRequest

OPERATION_MAX, REASON_MAX = 150, 2000  # the body's bounds, for the serializer and plain_body


class ActionCreateSerializer(StrictSerializer):
    operation = serializers.CharField(max_length=OPERATION_MAX, help_text="<connector>.<operation>")
    params = serializers.JSONField(required=False, default=dict)
    reason = serializers.CharField(
        max_length=REASON_MAX, required=False, allow_blank=True, default=""
    )

    @classmethod
    def validated(cls, data) -> dict:
        """The validated body. The usual body (known keys, strings, an object of params) is
        checked here directly, as these fields would check it: building a serializer cost
        more than the gate's SQL on the hot path. Anything else goes through the serializer,
        which accepts it or says exactly what is wrong (tested to agree:
        ``test_actions_body``)."""
        fast = plain_body(data)
        if fast is not None:
            return fast
        serializer = cls(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


_BODY_KEYS = frozenset(("operation", "params", "reason"))


def _plain_text(value, *, max_length: int, allow_blank: bool) -> str | None:
    """``value`` as a ``CharField`` (trim_whitespace) would accept it, or None when it is
    not a plain acceptable string (the serializer then decides)."""
    if type(value) is not str:
        return None
    value = value.strip()
    if (not value and not allow_blank) or len(value) > max_length or "\x00" in value:
        return None
    try:
        value.encode("utf-8")  # lone surrogates, which CharField refuses, do not encode
    except UnicodeEncodeError:
        return None
    return value


def plain_body(data) -> dict | None:
    """The usual body, validated as ``ActionCreateSerializer`` would, or None when the
    serializer must decide."""
    if type(data) is not dict or not data.keys() <= _BODY_KEYS:
        return None
    operation = _plain_text(data.get("operation"), max_length=OPERATION_MAX, allow_blank=False)
    reason = _plain_text(data.get("reason", ""), max_length=REASON_MAX, allow_blank=True)
    params = data.get("params", {})
    if operation is None or reason is None or type(params) is not dict:
        return None
    return {"operation": operation, "params": params, "reason": reason}


class ActionSerializer(serializers.ModelSerializer):
    """An action. Its parameters and outcome as the request's user may see them
    (``autonomy.masking``): the agent that sent it reads its own values in full; a person
    needs ``autonomy.view_sensitive``."""

    operation = serializers.CharField(source="operation.key")
    params = MaskedJSONField(source="*")
    outcome = MaskedJSONField(source="*", result=True)
    agent = serializers.CharField(source="agent.slug")
    decision = serializers.CharField(source="verdict")
    policies = serializers.JSONField(source="policy_ids")
    amount = serializers.DecimalField(
        max_digits=18, decimal_places=2, coerce_to_string=True, allow_null=True
    )
    executed = serializers.BooleanField(
        help_text="whether the connector was called; never for a shadowed action"
    )

    class Meta:
        model = ActionRequest
        fields = [
            "id",
            "agent",
            "operation",
            "params",
            "reason",
            "decision",
            "status",
            "risk_score",
            "risk_factors",
            "reasons",
            "policies",
            "amount",
            "idempotency_key",
            "request_id",
            "trace_id",
            "created_at",
            "decided_at",
            "started_at",
            "finished_at",
            "attempts",
            "outcome",
            "error",
            "autonomy_level",
            "executed",
        ]
        read_only_fields = fields

    @classmethod
    def represent(cls, action: ActionRequest, *, viewer=None) -> dict:
        """The same body as ``ActionSerializer(action).data``, built directly: the gate
        answers on the hot path, where DRF's per-field machinery cost more than the body's
        SQL. ``test_actions_api`` pins it to the serializer's output field by field, so the
        serializer (and the OpenAPI schema built from it) stays the definition. Parameters
        and outcome as ``viewer`` may see them (``MaskedJSONField``)."""
        return {
            "id": str(action.pk),
            "agent": str(action.agent.slug),
            "operation": str(action.operation.key),
            "params": masking.params_for(action, viewer=viewer),
            "reason": str(action.reason),
            "decision": str(action.verdict),
            "status": str(action.status),
            "risk_score": int(action.risk_score),
            "risk_factors": action.risk_factors,
            "reasons": action.reasons,
            "policies": action.policy_ids,
            "amount": None if action.amount is None else _money(action.amount),
            "idempotency_key": action.idempotency_key,
            "request_id": str(action.request_id),
            "trace_id": str(action.trace_id),
            "created_at": _moment(action.created_at),
            "decided_at": _moment(action.decided_at),
            "started_at": _moment(action.started_at),
            "finished_at": _moment(action.finished_at),
            "attempts": int(action.attempts),
            "outcome": masking.outcome_for(action, viewer=viewer),
            "error": action.error,
            "autonomy_level": str(action.autonomy_level),
            "executed": action.executed,
        }


def _moment(value) -> str | None:
    """As DRF's ``DateTimeField`` writes it: ISO 8601 in the current time zone, UTC as Z."""
    if not value:
        return None
    text = value.astimezone(timezone.get_current_timezone()).isoformat()
    return text[:-6] + "Z" if text.endswith("+00:00") else text


def _money(value: Decimal) -> str:
    """As ``DecimalField(max_digits=18, decimal_places=2, coerce_to_string=True)`` does."""
    return f"{value.quantize(CENTS, context=decimal.Context(prec=18)):f}"


CENTS = Decimal("0.01")


IDEMPOTENCY = OpenApiParameter(
    "Idempotency-Key",
    str,
    OpenApiParameter.HEADER,
    description="Same key and same request → the same action, never a second execution.",
)


class ActionViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """An agent's own actions. Another agent's action is simply not found."""

    serializer_class = ActionSerializer
    filterset_fields = ["status", "verdict"]
    ordering_fields = ["created_at", "risk_score"]

    def get_permissions(self):
        scope = Scope.ACTIONS_WRITE if self.action == "create" else Scope.AGENT_READ
        return [IsAgent(scope=scope)]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ActionRequest.objects.none()
        return ActionRequest.objects.select_related("operation__connector", "agent").filter(
            agent=request_agent(self.request)
        )

    @extend_schema(
        request=ActionCreateSerializer,
        responses={201: ActionSerializer, 200: ActionSerializer},
        parameters=[IDEMPOTENCY],
    )
    def create(self, request):
        data = ActionCreateSerializer.validated(request.data)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > 200:
            raise DomainError(ErrorCode.VALIDATION_FAILED, "Idempotency-Key is too long.")
        credential = request.auth if hasattr(request.auth, "prefix") else None
        action, replayed = actions.action_request(
            agent=request_agent(request),
            credential=credential,
            operation_key=data["operation"],
            params=data["params"],
            reason=data["reason"],
            idempotency_key=key,
        )
        response = Response(
            ActionSerializer.represent(action, viewer=request.user),
            status=status.HTTP_200_OK if replayed else status.HTTP_201_CREATED,
        )
        if replayed:
            response["Idempotent-Replayed"] = "true"
        return response


class ApprovalAskSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500, help_text="Why a person approves this.")
    when = serializers.CharField(
        max_length=500, required=False, allow_blank=True, default="",
        help_text="A workflow condition, e.g. invoice.amount > 10000; empty: always.",
    )  # fmt: skip
    context = serializers.JSONField(required=False, default=dict, help_text="The run's context.")

    def validate_when(self, value: str) -> str:
        if value:
            try:
                conditions.parse(value)
            except conditions.ConditionError as exc:
                raise serializers.ValidationError(str(exc)) from exc
        return value

    def validate_context(self, value):
        if not isinstance(value, dict):
            raise serializers.ValidationError("context must be a JSON object.")
        return value


class SimulateSerializer(StrictSerializer):
    agent = serializers.CharField(
        max_length=100, required=False, help_text="Agent slug; an agent simulates itself."
    )
    operation = serializers.CharField(max_length=150)
    params = serializers.JSONField(required=False, default=dict)
    draft_policy = serializers.CharField(required=False, allow_blank=True, default="")
    replaces_policy = serializers.IntegerField(required=False, allow_null=True, default=None)
    approval = ApprovalAskSerializer(
        required=False, allow_null=True, default=None,
        help_text="A workflow step's approval gate, decided by the gate with the rest.",
    )  # fmt: skip


class SimulateView(APIView):
    """A dry run against current (or draft) policies: not executed, not audited as real."""

    @extend_schema(request=SimulateSerializer, responses={200: dict})
    def post(self, request):
        data = SimulateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        agent = request_agent(request)
        by_agent = agent is not None
        if agent is None:
            if not request.user.has_perm("autonomy.view_policy"):
                raise DomainError(
                    ErrorCode.PERMISSION_DENIED,
                    "Simulating needs the permission to view policies.",
                    status_code=403,
                )
            agent = (
                Agent.objects.select_related("role__group", "business_unit")
                .filter(slug=values.get("agent") or "")
                .first()
            )
            if agent is None:
                raise DomainError(
                    ErrorCode.NOT_FOUND, "No such agent.", {"agent": values.get("agent")}, 404
                )
        elif values.get("draft_policy"):
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "Agents cannot simulate draft policies.",
                status_code=403,
            )
        operation, decision = actions.action_simulate(
            agent=agent,
            operation_key=values["operation"],
            params=values["params"],
            draft_text=values["draft_policy"] or None,
            replaces=values["replaces_policy"],
            approval=gate.ApprovalAsk(**values["approval"]) if values["approval"] else None,
            by_agent=by_agent,
        )
        return Response(
            {"agent": agent.slug, "operation": operation.key, "simulated": True}
            | decision.as_dict()
            | ({"redacted_params": decision.params} if decision.params is not None else {})
        )
