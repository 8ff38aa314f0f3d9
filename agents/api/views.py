"""Registry API: thin views that parse input, call a service or selector, shape the output."""

from datetime import timedelta

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from agents import blueprints, selectors, services
from agents.api import serializers as s
from agents.api.permissions import IsAgent, IsPerson, RegistryModelPermissions, request_agent
from agents.models import Agent, AgentStatus, RiskTier, Scope
from autonomy import levels
from autonomy.api.routers import INTEGER_ID
from autonomy.rollouts import selectors as rollout_selectors


class AgentFilter(django_filters.FilterSet):
    status = django_filters.ChoiceFilter(choices=AgentStatus.choices)
    business_unit = django_filters.CharFilter(field_name="business_unit__slug")
    role = django_filters.CharFilter(field_name="role__slug")
    owner = django_filters.CharFilter(field_name="owner__username")
    risk_tier = django_filters.ChoiceFilter(choices=RiskTier.choices)

    class Meta:
        model = Agent
        fields = ["status", "business_unit", "role", "owner", "risk_tier"]


def _may(user, perm: str, obj=None) -> bool:
    """A global permission, or guardian's object permission on ``obj``."""
    return user.has_perm(perm) or (obj is not None and user.has_perm(perm, obj))


class AgentViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """The agent registry. People manage it; an agent reads itself at ``/agents/me/``."""

    serializer_class = s.AgentSerializer
    permission_classes = [IsPerson]
    filterset_class = AgentFilter
    search_fields = ["name", "slug", "description"]
    ordering_fields = ["name", "created_at", "risk_tier", "status"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Agent.objects.none()
        return selectors.agent_list(user=self.request.user)

    def get_permissions(self):
        if self.action == "me":
            return [IsAgent(scope=Scope.AGENT_READ)]
        return super().get_permissions()

    def _require(self, perm: str, obj=None) -> None:
        if not _may(self.request.user, perm, obj):
            raise PermissionDenied(f"You need the {perm} permission.")

    @extend_schema(request=s.AgentWriteSerializer, responses={201: s.AgentSerializer})
    def create(self, request):
        self._require("agents.add_agent")
        data = s.AgentWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agent = services.agent_register(by=request.user, **data.validated_data)
        return Response(s.AgentSerializer(agent).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.AgentWriteSerializer, responses=s.AgentSerializer)
    def partial_update(self, request, pk=None):
        agent = self.get_object()
        self._require("agents.change_agent", agent)
        data = s.AgentWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        if "slug" in changes:
            changes.pop("slug")  # the slug names the service user; it never changes
        agent = services.agent_update(agent=agent, by=request.user, **changes)
        return Response(s.AgentSerializer(agent).data)

    @extend_schema(responses=s.AgentMeSerializer)
    @action(detail=False, methods=["get"])
    def me(self, request):
        agent = request_agent(request)
        level = levels.level_for(agent=agent)  # as set for all its operations
        return Response(
            s.AgentSerializer(agent).data
            | {
                "autonomy_level": str(level.level),
                "autonomy_level_source": level.source,
                "rollouts": [p.as_dict() for p in rollout_selectors.plan_levels(agent=agent)],
            }
        )

    def _lifecycle(self, request, service):
        agent = self.get_object()
        self._require("agents.change_agent", agent)
        data = s.LifecycleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agent = service(agent=agent, by=request.user, reason=data.validated_data["reason"])
        return Response(s.AgentSerializer(agent).data)

    # Pause, resume, quarantine and kill are interventions (``interventions.api``): they sit
    # above this registry and answer at /agents/{id}/<verb>/ beside it.

    @extend_schema(request=s.LifecycleSerializer, responses=s.AgentSerializer)
    @action(detail=True, methods=["post"])
    def retire(self, request, pk=None):
        return self._lifecycle(request, services.agent_retire)

    @extend_schema(
        methods=["post"],
        request=s.CredentialIssueSerializer,
        responses={201: s.IssuedCredentialSerializer},
    )
    @extend_schema(methods=["get"], responses=s.CredentialSerializer(many=True))
    @action(detail=True, methods=["get", "post"])
    def credentials(self, request, pk=None):
        agent = self.get_object()
        if request.method == "GET":
            self._require("agents.view_credential", agent)
            page = self.paginate_queryset(selectors.credential_list(agent=agent))
            return self.get_paginated_response(s.CredentialSerializer(page, many=True).data)
        self._require("agents.add_credential", agent)
        data = s.CredentialIssueSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        credential, token = services.credential_issue(
            agent=agent, by=request.user, **data.validated_data
        )
        credential.token = token
        return Response(
            s.IssuedCredentialSerializer(credential).data, status=status.HTTP_201_CREATED
        )


class BusinessUnitViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = s.BusinessUnitSerializer
    lookup_value_regex = INTEGER_ID
    permission_classes = [IsPerson, RegistryModelPermissions]
    search_fields = ["name", "slug"]
    filterset_fields = ["slug"]

    def get_queryset(self):
        return selectors.business_unit_list()

    def perform_create(self, serializer):
        serializer.instance = services.business_unit_create(
            by=self.request.user, **serializer.validated_data
        )

    @extend_schema(request=s.BusinessUnitUpdateSerializer, responses=s.BusinessUnitSerializer)
    def partial_update(self, request, pk=None):
        unit = self.get_object()
        data = s.BusinessUnitUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        unit = services.business_unit_update(unit=unit, by=request.user, **data.validated_data)
        return Response(s.BusinessUnitSerializer(unit).data)


class RoleViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = s.RoleSerializer
    lookup_value_regex = INTEGER_ID
    permission_classes = [IsPerson, RegistryModelPermissions]
    search_fields = ["slug", "group__name"]
    filterset_fields = ["slug", "default_risk_tier"]

    def get_queryset(self):
        return selectors.role_list()

    def perform_create(self, serializer):
        data = dict(serializer.validated_data)
        name = data.pop("group")["name"]
        serializer.instance = services.role_create(by=self.request.user, name=name, **data)


class CredentialPermissions(RegistryModelPermissions):
    """Reading needs view_credential; rotating and revoking are changes, not additions."""

    perms_map = {
        **RegistryModelPermissions.perms_map,
        "POST": ["%(app_label)s.change_%(model_name)s"],
    }


class CredentialViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Credentials by id: list, rotate (new token, overlap window), revoke (immediate)."""

    serializer_class = s.CredentialSerializer
    permission_classes = [IsPerson, CredentialPermissions]
    filterset_fields = ["agent", "name"]

    def get_queryset(self):
        return selectors.credential_list()

    @extend_schema(
        request=s.CredentialRotateSerializer, responses={201: s.IssuedCredentialSerializer}
    )
    @action(detail=True, methods=["post"])
    def rotate(self, request, pk=None):
        credential = self.get_object()
        if not _may(request.user, "agents.change_credential", credential.agent):
            raise PermissionDenied("You need the agents.change_credential permission.")
        data = s.CredentialRotateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        overlap = data.validated_data.get("overlap_seconds")
        new, token = services.credential_rotate(
            credential=credential,
            by=request.user,
            overlap=timedelta(seconds=overlap) if overlap is not None else None,
        )
        new.token = token
        return Response(s.IssuedCredentialSerializer(new).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=s.LifecycleSerializer, responses=s.CredentialSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        credential = get_object_or_404(self.get_queryset(), pk=pk)
        if not _may(request.user, "agents.change_credential", credential.agent):
            raise PermissionDenied("You need the agents.change_credential permission.")
        data = s.LifecycleSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        credential = services.credential_revoke(
            credential=credential, by=request.user, reason=data.validated_data["reason"]
        )
        return Response(s.CredentialSerializer(credential).data)


class PermissionModelViewSet(viewsets.ViewSet):
    """Clone a role's permission model to another business unit: ``plan`` shows the diff and
    writes nothing; ``clone`` applies the plan whose ``hash`` it is given (409 when stale)."""

    permission_classes = [IsPerson]

    def _args(self, serializer_class) -> dict:
        if not blueprints.may_manage(user=self.request.user):
            raise PermissionDenied("Cloning a permission model is for IT admins.")
        data = serializer_class(data=self.request.data)
        data.is_valid(raise_exception=True)
        args = dict(data.validated_data)
        args["new_role_slug"] = args.pop("new_role")
        return args

    @extend_schema(
        request=s.PermissionModelPlanSerializer, responses=s.PermissionModelDiffSerializer
    )
    @action(detail=False, methods=["post"])
    def plan(self, request):
        plan = blueprints.permission_model_plan(**self._args(s.PermissionModelPlanSerializer))
        return Response(s.PermissionModelDiffSerializer(plan).data)

    @extend_schema(
        request=s.PermissionModelCloneSerializer, responses=s.PermissionModelDiffSerializer
    )
    @action(detail=False, methods=["post"])
    def clone(self, request):
        plan = blueprints.permission_model_clone(
            by=request.user, **self._args(s.PermissionModelCloneSerializer)
        )
        return Response(s.PermissionModelDiffSerializer(plan).data)
