"""/api/v1/interventions/ and /api/v1/actions/{id}/override/: people stepping in.

Thin: parse, check the person, call ``interventions.services``, shape the answer. Agents are
refused, whatever groups their service user has.
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response
from rest_framework.views import APIView

from agents import selectors as agent_selectors
from agents.api.permissions import IsPerson
from agents.api.serializers import AgentSerializer, LifecycleSerializer
from agents.models import Agent, BusinessUnit
from autonomy.api.actions import ActionSerializer
from autonomy.api.routers import INTEGER_ID
from autonomy.api.serializers import StrictSerializer
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import ActionRequest, Intervention, InterventionKind
from interventions import services


class InterventionSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.slug", default=None, allow_null=True)
    business_unit = serializers.CharField(
        source="business_unit.slug", default=None, allow_null=True
    )
    by = serializers.CharField(source="by.username", default=None, allow_null=True)
    lifted_by = serializers.CharField(source="lifted_by.username", default=None, allow_null=True)

    class Meta:
        model = Intervention
        fields = [
            "id", "kind", "scope", "agent", "business_unit", "reason", "details", "by",
            "created_at", "lifted_at", "lifted_by",
        ]  # fmt: skip
        read_only_fields = fields


class EmergencyStopSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000)
    business_unit = serializers.SlugRelatedField(
        slug_field="slug", queryset=BusinessUnit.objects.all(), required=False, allow_null=True
    )


class LiftSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ActionOverrideSerializer(StrictSerializer):
    verdict = serializers.ChoiceField(choices=["allow", "deny"])
    reason = serializers.CharField(max_length=2000)


class MayIntervene(IsPerson):
    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if not services.may_intervene(user=request.user):
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "Only IT admins, risk officers and superusers may intervene.",
                status_code=403,
            )
        return True


class InterventionViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Every intervention, newest first; emergency stops are started and lifted here."""

    serializer_class = InterventionSerializer
    lookup_value_regex = INTEGER_ID
    permission_classes = [MayIntervene]
    filterset_fields = ["kind", "scope", "agent"]

    def get_queryset(self):
        return Intervention.objects.select_related("agent", "business_unit", "by", "lifted_by")

    @extend_schema(request=EmergencyStopSerializer, responses={201: InterventionSerializer})
    @action(detail=False, methods=["post"], url_path="emergency-stop")
    def emergency_stop(self, request):
        data = EmergencyStopSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        stop = services.emergency_stop(
            by=request.user,
            reason=data.validated_data["reason"],
            business_unit=data.validated_data.get("business_unit"),
        )
        return Response(InterventionSerializer(stop).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=LiftSerializer, responses=InterventionSerializer)
    @action(detail=True, methods=["post"])
    def lift(self, request, pk=None):
        stop = get_object_or_404(self.get_queryset(), pk=pk, kind=InterventionKind.EMERGENCY_STOP)
        data = LiftSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        stop = services.emergency_lift(
            intervention=stop, by=request.user, reason=data.validated_data["reason"]
        )
        return Response(InterventionSerializer(stop).data)


class ActionOverrideView(APIView):
    """A person settles an action that waits for approval: allow executes it, deny denies it."""

    permission_classes = [MayIntervene]

    @extend_schema(request=ActionOverrideSerializer, responses=ActionSerializer)
    def post(self, request, pk):
        action = get_object_or_404(ActionRequest, pk=pk)
        data = ActionOverrideSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.action_override(action=action, by=request.user, **data.validated_data)
        action = ActionRequest.objects.select_related("operation__connector", "agent").get(pk=pk)
        return Response(ActionSerializer(action, context={"request": request}).data)


class AgentInterventionViewSet(viewsets.GenericViewSet):
    """``/api/v1/agents/{id}/pause|resume|quarantine|kill/``: people stepping in on one agent,
    beside the registry's own endpoints (``agents.api``). Who may is the services' rule
    (``interventions.services.may_intervene``, ``may_resume``); which agents a person sees is
    the registry's (``agents.selectors.agent_list``)."""

    serializer_class = AgentSerializer
    permission_classes = [IsPerson]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Agent.objects.none()
        return agent_selectors.agent_list(user=self.request.user)

    def _intervene(self, request, service) -> Response:
        agent = self.get_object()
        if not services.may_intervene(user=request.user, agent=agent):
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "Only IT admins, risk officers, superusers and the agent's owner may do this.",
                status_code=403,
            )
        data = LifecycleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        service(agent=agent, by=request.user, reason=data.validated_data["reason"])
        agent.refresh_from_db()
        return Response(AgentSerializer(agent).data)

    @extend_schema(request=LifecycleSerializer, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request, pk=None):
        return self._intervene(request, services.agent_pause)

    @extend_schema(request=LifecycleSerializer, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def resume(self, request, pk=None):
        return self._intervene(request, services.agent_resume)

    @extend_schema(request=LifecycleSerializer, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def quarantine(self, request, pk=None):
        return self._intervene(request, services.agent_quarantine)

    @extend_schema(request=LifecycleSerializer, responses=AgentSerializer)
    @action(detail=True, methods=["post"])
    def kill(self, request, pk=None):
        """Quarantine, revoke every credential, cancel waiting actions and assigned steps."""
        return self._intervene(request, services.agent_kill)
