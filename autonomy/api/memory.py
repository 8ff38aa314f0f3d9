"""/api/v1/memory/: people see, delete and purge shared memory (agents reach it only through
the gate, as ``memory.*`` operations of ``/api/v1/actions/``)."""

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from agents.api.permissions import IsPerson, RegistryModelPermissions
from agents.models import Agent
from autonomy.api.routers import INTEGER_ID
from autonomy.api.serializers import StrictSerializer
from autonomy.memory import selectors, services
from autonomy.models import DataClass, MemoryEntry

PURGE_PERM = "autonomy.purge_memoryentry"


class MemoryEntrySerializer(serializers.ModelSerializer):
    scope = serializers.CharField(read_only=True, help_text='e.g. "business unit finance"')
    business_unit = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    role = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    agent = serializers.SlugRelatedField(
        slug_field="slug", read_only=True, help_text="the agent that wrote it last"
    )
    written_by = serializers.SlugRelatedField(
        slug_field="username", read_only=True, help_text="a person who corrected it last"
    )
    value = serializers.SerializerMethodField(
        help_text="masked for people who may not change entries when it is sensitive"
    )

    class Meta:
        model = MemoryEntry
        fields = [
            "id", "scope", "business_unit", "role", "template_key", "key", "value",
            "sensitivity", "agent", "action", "action_template_key", "written_by",
            "created_at", "updated_at", "expires_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(OpenApiTypes.ANY)
    def get_value(self, entry):
        return selectors.value_shown(entry=entry, user=self.context["request"].user)


class MemoryFilter(django_filters.FilterSet):
    agent = django_filters.CharFilter(field_name="agent__slug")
    business_unit = django_filters.CharFilter(field_name="business_unit__slug")
    role = django_filters.CharFilter(field_name="role__slug")
    key_prefix = django_filters.CharFilter(field_name="key", lookup_expr="startswith")
    sensitivity = django_filters.ChoiceFilter(choices=DataClass.choices)

    class Meta:
        model = MemoryEntry
        fields = ["agent", "business_unit", "role", "template_key", "key_prefix", "sensitivity"]


class PurgeSerializer(StrictSerializer):
    agent = serializers.CharField(max_length=100, help_text="the slug of the agent who wrote them")
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class MemoryEntryViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Every entry of shared memory, with its provenance, for people with the permission."""

    serializer_class = MemoryEntrySerializer
    permission_classes = [IsPerson, RegistryModelPermissions]
    filterset_class = MemoryFilter
    search_fields = ["key"]
    ordering_fields = ["key", "updated_at", "expires_at"]
    lookup_value_regex = INTEGER_ID
    queryset = MemoryEntry.objects.none()  # for the model permissions; reads use the selector

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return MemoryEntry.objects.none()
        return selectors.entries_for_people()

    def get_permissions(self):
        if self.action == "purge":
            return [IsPerson()]  # its own permission, checked in the view
        return super().get_permissions()

    def perform_destroy(self, instance):
        services.memory_delete(entry=instance, by=self.request.user)

    @extend_schema(request=PurgeSerializer, responses={200: dict})
    @action(detail=False, methods=["post"])
    def purge(self, request):
        """Delete every entry an agent wrote last (a poisoned memory), in one step."""
        if not request.user.has_perm(PURGE_PERM):
            raise PermissionDenied(f"You need the {PURGE_PERM} permission.")
        data = PurgeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agent = get_object_or_404(Agent, slug=data.validated_data["agent"])
        purged = services.memory_purge(
            agent=agent, by=request.user, reason=data.validated_data["reason"]
        )
        return Response({"agent": agent.slug, "purged": purged}, status=status.HTTP_200_OK)
