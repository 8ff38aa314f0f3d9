"""/api/v1/autonomy-settings/: where autonomy levels are set, for people with the model
permissions (risk officers set and remove them; every portal role reads them). Thin: writes
through ``autonomy.level_settings``, the same checks as the admin's. Agents read their own
level at ``/api/v1/agents/me/``."""

from rest_framework import mixins, serializers, status, viewsets
from rest_framework.response import Response

from agents.api.permissions import IsPerson, RegistryModelPermissions
from agents.models import Agent, BusinessUnit, Role
from autonomy import level_settings
from autonomy.api.serializers import StrictSerializer
from autonomy.models import AutonomyLevel, AutonomySetting

INTEGER_ID = r"[0-9]+"


class AutonomySettingSerializer(serializers.ModelSerializer):
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    role = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    business_unit = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    scope = serializers.CharField(read_only=True, help_text='"business unit finance"')
    operations = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="empty: all operations"
    )

    class Meta:
        model = AutonomySetting
        fields = [
            "id", "level", "scope", "agent", "role", "business_unit", "template_key",
            "operations", "note", "created_at",
        ]  # fmt: skip
        read_only_fields = fields


class AutonomySettingWriteSerializer(StrictSerializer):
    level = serializers.ChoiceField(choices=AutonomyLevel.choices)
    agent = serializers.SlugRelatedField(
        slug_field="slug", queryset=Agent.objects.all(), required=False
    )
    role = serializers.SlugRelatedField(
        slug_field="slug", queryset=Role.objects.all(), required=False
    )
    business_unit = serializers.SlugRelatedField(
        slug_field="slug", queryset=BusinessUnit.objects.all(), required=False
    )
    template_key = serializers.SlugField(max_length=100, required=False, default="")
    operations = serializers.ListField(
        child=serializers.CharField(max_length=200), required=False, default=list, max_length=200
    )
    note = serializers.CharField(max_length=300, required=False, default="", allow_blank=True)


class AutonomySettingViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Autonomy levels set on an agent, a role, a business unit or a workflow template."""

    lookup_value_regex = INTEGER_ID
    permission_classes = [IsPerson, RegistryModelPermissions]
    filterset_fields = ["level", "template_key"]
    ordering_fields = ["created_at", "level"]

    def get_queryset(self):
        return AutonomySetting.objects.select_related("agent", "role", "business_unit").order_by(
            "pk"
        )

    def get_serializer_class(self):
        if self.action == "create":
            return AutonomySettingWriteSerializer
        return AutonomySettingSerializer

    def create(self, request, *args, **kwargs):
        data = AutonomySettingWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        setting = level_settings.setting_create(by=request.user, **data.validated_data)
        return Response(AutonomySettingSerializer(setting).data, status=status.HTTP_201_CREATED)

    def perform_destroy(self, instance):
        level_settings.setting_delete(setting=instance, by=self.request.user)
