"""/api/v1/claims/ and /api/v1/runs/{run_id}/messages/: how agents coordinate.

A claim request never blocks: 201 means the agent holds the key, 202 that it waits (poll
the claim until it is ``held``). An agent sees only its own claims; another agent's claim
is simply not found.
"""

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents.api.permissions import IsAgent, request_agent
from agents.models import Agent, Scope
from autonomy.api.routers import INTEGER_ID
from autonomy.api.serializers import StrictSerializer
from autonomy.errors import DomainError, ErrorCode
from workflows import coordination
from workflows.models import Claim, ClaimStatus, Message, StepRun


class ClaimCreateSerializer(StrictSerializer):
    resource_key = serializers.CharField(
        max_length=coordination.RESOURCE_KEY_MAX, help_text="<kind>:<id>, e.g. erp.invoice:INV-1"
    )
    priority = serializers.IntegerField(
        required=False, default=0, help_text="Higher waits ahead and asks a lower holder to yield."
    )
    lease_seconds = serializers.IntegerField(
        required=False, default=60, help_text="Renew before it runs out, or lose the claim."
    )
    run = serializers.UUIDField(
        required=False, allow_null=True, default=None, help_text="A run you are assigned to."
    )


class ClaimSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.slug")

    class Meta:
        model = Claim
        fields = [
            "id",
            "resource_key",
            "agent",
            "run",
            "priority",
            "status",
            "lease_seconds",
            "lease_until",
            "yield_requested",
            "created_at",
            "acquired_at",
            "ended_at",
        ]
        read_only_fields = fields


class ClaimViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The agent's own claims on resource keys."""

    serializer_class = ClaimSerializer
    lookup_value_regex = INTEGER_ID
    filterset_fields = ["status", "resource_key"]
    ordering_fields = ["created_at", "priority"]

    def get_permissions(self):
        write = self.action in ("create", "renew", "release")
        return [IsAgent(scope=Scope.TASKS_WRITE if write else Scope.AGENT_READ)]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Claim.objects.none()
        return coordination.claims_of(agent=request_agent(self.request))

    @extend_schema(
        request=ClaimCreateSerializer, responses={201: ClaimSerializer, 202: ClaimSerializer}
    )
    def create(self, request):
        data = ClaimCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        run = coordination.run_get(run_id=values["run"]) if values["run"] else None
        claim = coordination.claim_acquire(
            agent=request_agent(request),
            resource_key=values["resource_key"],
            priority=values["priority"],
            lease_seconds=values["lease_seconds"],
            run=run,
        )
        held = claim.status == ClaimStatus.HELD
        return Response(
            ClaimSerializer(claim).data,
            status=status.HTTP_201_CREATED if held else status.HTTP_202_ACCEPTED,
        )

    @extend_schema(request=None, responses=ClaimSerializer)
    @action(detail=True, methods=["post"])
    def renew(self, request, pk=None):
        claim = coordination.claim_renew(
            agent=request_agent(request), claim_id=self.get_object().pk
        )
        return Response(ClaimSerializer(claim).data)

    @extend_schema(request=None, responses=ClaimSerializer)
    @action(detail=True, methods=["post"])
    def release(self, request, pk=None):
        claim = coordination.claim_release(
            agent=request_agent(request), claim_id=self.get_object().pk
        )
        return Response(ClaimSerializer(claim).data)


class MessageCreateSerializer(StrictSerializer):
    body = serializers.JSONField(help_text="A JSON object.")
    recipient = serializers.CharField(
        max_length=100,
        required=False,
        allow_null=True,
        default=None,
        help_text="Agent slug; none means everyone on the run.",
    )
    step_run = serializers.UUIDField(required=False, allow_null=True, default=None)


class MessageSerializer(serializers.ModelSerializer):
    sender = serializers.CharField(source="sender.slug")
    recipient = serializers.CharField(source="recipient.slug", allow_null=True, default=None)

    class Meta:
        model = Message
        fields = ["id", "run", "sender", "recipient", "step_run", "body", "created_at"]
        read_only_fields = fields


class MessagePageSerializer(serializers.Serializer):
    results = MessageSerializer(many=True)
    after = serializers.IntegerField(
        allow_null=True, help_text="Pass as ?after= to read the next messages."
    )


class MessageQuerySerializer(serializers.Serializer):
    after = serializers.IntegerField(required=False, min_value=0)


RUN_ID = OpenApiParameter("run_id", OpenApiTypes.UUID, OpenApiParameter.PATH)


class RunMessageViewSet(viewsets.GenericViewSet):
    """Messages on one run: to the calling agent or to everyone on it, oldest first."""

    serializer_class = MessageSerializer
    pagination_class = None
    filter_backends = []

    def get_permissions(self):
        scope = Scope.TASKS_WRITE if self.action == "create" else Scope.AGENT_READ
        return [IsAgent(scope=scope)]

    @extend_schema(
        parameters=[RUN_ID, MessageQuerySerializer],
        responses=MessagePageSerializer,
    )
    def list(self, request, run_id=None):
        query = MessageQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        after = query.validated_data.get("after")
        messages = coordination.messages_for(
            agent=request_agent(request), run=coordination.run_get(run_id=run_id), after_id=after
        )
        return Response(
            {
                "results": MessageSerializer(messages, many=True).data,
                "after": messages[-1].pk if messages else after,
            }
        )

    @extend_schema(
        parameters=[RUN_ID], request=MessageCreateSerializer, responses={201: MessageSerializer}
    )
    def create(self, request, run_id=None):
        data = MessageCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        run = coordination.run_get(run_id=run_id)
        message = coordination.message_send(
            run=run,
            sender=request_agent(request),
            body=values["body"],
            recipient=_agent(values["recipient"]),
            step_run=_step_run(values["step_run"]),
        )
        return Response(MessageSerializer(message).data, status=status.HTTP_201_CREATED)


def _agent(slug: str | None) -> Agent | None:
    if slug is None:
        return None
    agent = Agent.objects.filter(slug=slug).first()
    if agent is None:
        raise DomainError(ErrorCode.VALIDATION_FAILED, "No such agent.", {"recipient": slug})
    return agent


def _step_run(step_run_id) -> StepRun | None:
    if step_run_id is None:
        return None
    step_run = StepRun.objects.filter(pk=step_run_id).first()
    if step_run is None:
        raise DomainError(
            ErrorCode.VALIDATION_FAILED, "No such step run.", {"step_run": str(step_run_id)}
        )
    return step_run
