from django.contrib.auth import get_user_model
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents import selectors
from agents.models import Agent, AgentStatus, BusinessUnit, Credential, RiskTier, Role, Scope
from autonomy.api.serializers import StrictModelSerializer, StrictSerializer

User = get_user_model()


class UserRefSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["id", "username", "email"]
        read_only_fields = fields


class BusinessUnitSerializer(StrictModelSerializer):
    class Meta:
        model = BusinessUnit
        fields = [
            "id", "name", "slug", "description", "approval_threshold", "deny_threshold",
            "dual_control_risk", "auto_quarantine_on_drift", "created_at",
        ]  # fmt: skip
        # Thresholds change through PATCH (``business_unit_update``), created at defaults.
        read_only_fields = [
            "id", "approval_threshold", "deny_threshold", "dual_control_risk",
            "auto_quarantine_on_drift", "created_at",
        ]  # fmt: skip


class BusinessUnitUpdateSerializer(StrictSerializer):
    """A unit's name, description and risk thresholds (scores 0-100)."""

    name = serializers.CharField(max_length=120, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    approval_threshold = serializers.IntegerField(min_value=0, max_value=100, required=False)
    deny_threshold = serializers.IntegerField(min_value=0, max_value=100, required=False)
    dual_control_risk = serializers.IntegerField(min_value=0, max_value=100, required=False)
    auto_quarantine_on_drift = serializers.BooleanField(required=False)


class RoleSerializer(StrictModelSerializer):
    name = serializers.CharField(source="group.name", max_length=150)

    class Meta:
        model = Role
        fields = ["id", "name", "slug", "description", "default_risk_tier", "created_at"]
        read_only_fields = ["id", "created_at"]


class ChangeWaitingSerializer(serializers.Serializer):
    """A registry change of the agent that takes effect only when approved."""

    id = serializers.UUIDField()
    kind = serializers.CharField()
    summary = serializers.CharField()


class AgentSerializer(StrictModelSerializer):
    owner = UserRefSerializer(read_only=True)
    business_unit = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    role = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    awaiting_approval = serializers.SerializerMethodField(
        help_text="Its registration, a riskier tier or a wider grant, waiting for its unit's "
        "owner and security: none of them applies until approved."
    )

    @extend_schema_field(ChangeWaitingSerializer(many=True))
    def get_awaiting_approval(self, agent) -> list:
        return ChangeWaitingSerializer(selectors.changes_waiting(agent=agent), many=True).data

    class Meta:
        model = Agent
        fields = [
            "id",
            "name",
            "slug",
            "description",
            "owner",
            "business_unit",
            "role",
            "status",
            "status_reason",
            "status_changed_at",
            "risk_tier",
            "awaiting_approval",
            "oidc_client_id",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class AgentRolloutSerializer(serializers.Serializer):
    """One rollout plan the agent is in, and what it says of the agent."""

    plan = serializers.SlugField(help_text="the plan's slug")
    name = serializers.CharField()
    wave = serializers.IntegerField(help_text="the plan's current wave (0: not started)")
    reached = serializers.BooleanField(help_text="whether the waves up to it reach this agent")
    level = serializers.CharField(help_text="the level it gives: its wave's, or the held level")
    operations = serializers.ListField(
        child=serializers.CharField(), help_text="the operations it covers; empty: all"
    )


class AgentMeSerializer(AgentSerializer):
    """An agent reading itself: its profile, the autonomy level it acts at (as set for all
    its operations; one narrowed to some operations applies to those) and the rollout plans
    it is in."""

    autonomy_level = serializers.CharField(read_only=True)
    autonomy_level_source = serializers.CharField(
        read_only=True, help_text='where it was set, e.g. "business unit finance"; "default"'
    )
    rollouts = AgentRolloutSerializer(many=True, read_only=True)

    class Meta(AgentSerializer.Meta):
        fields = [
            *AgentSerializer.Meta.fields,
            "autonomy_level",
            "autonomy_level_source",
            "rollouts",
        ]
        read_only_fields = fields


class AgentWriteSerializer(StrictSerializer):
    """Input for create (all required but description/slug) and update (all optional)."""

    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=100, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    owner = serializers.SlugRelatedField(slug_field="username", queryset=User.objects.all())
    business_unit = serializers.SlugRelatedField(
        slug_field="slug", queryset=BusinessUnit.objects.all()
    )
    role = serializers.SlugRelatedField(slug_field="slug", queryset=Role.objects.all())
    risk_tier = serializers.ChoiceField(choices=RiskTier.choices, required=False)
    oidc_client_id = serializers.CharField(
        max_length=200, required=False, allow_null=True, allow_blank=True
    )

    def validate_slug(self, value):
        if Agent.objects.filter(slug=value).exists():
            raise serializers.ValidationError("An agent with this slug exists.", code="unique")
        return value


class LifecycleSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500, required=False, allow_blank=True, default="")


class CredentialSerializer(StrictModelSerializer):
    agent = serializers.UUIDField(source="agent_id", read_only=True)
    state = serializers.SerializerMethodField()

    class Meta:
        model = Credential
        fields = [
            "id",
            "agent",
            "name",
            "prefix",
            "scopes",
            "state",
            "created_at",
            "expires_at",
            "last_used_at",
            "revoked_at",
            "revoked_reason",
        ]
        read_only_fields = fields

    def get_state(self, obj) -> str:
        return obj.state()


class CredentialIssueSerializer(StrictSerializer):
    name = serializers.CharField(max_length=120, required=False, default="default")
    scopes = serializers.ListField(
        child=serializers.ChoiceField(choices=Scope.choices), required=False, allow_empty=False
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True)


class CredentialRotateSerializer(StrictSerializer):
    overlap_seconds = serializers.IntegerField(
        min_value=0, max_value=30 * 24 * 3600, required=False
    )


class IssuedCredentialSerializer(CredentialSerializer):
    """The one response that carries the token itself; it is never shown again."""

    token = serializers.CharField(read_only=True)

    class Meta(CredentialSerializer.Meta):
        fields = CredentialSerializer.Meta.fields + ["token"]
        read_only_fields = fields


STATUS_CHOICES = AgentStatus.choices


class PermissionModelPlanSerializer(StrictSerializer):
    """Which role's permission model to clone, from which unit to which, under which role."""

    role = serializers.SlugRelatedField(slug_field="slug", queryset=Role.objects.all())
    from_unit = serializers.SlugRelatedField(slug_field="slug", queryset=BusinessUnit.objects.all())
    to_unit = serializers.SlugRelatedField(slug_field="slug", queryset=BusinessUnit.objects.all())
    new_role = serializers.CharField(max_length=80)


class PermissionModelCloneSerializer(PermissionModelPlanSerializer):
    plan_hash = serializers.CharField(max_length=64, help_text="the hash of the plan previewed")


class PermissionModelDiffSerializer(serializers.Serializer):
    """The plan: what a clone would add or change; ``hash`` confirms it when saving."""

    role = serializers.CharField()
    from_unit = serializers.CharField()
    to_unit = serializers.CharField()
    new_role = serializers.CharField()
    new_role_exists = serializers.BooleanField()
    grants = serializers.ListField(child=serializers.DictField())
    policies = serializers.ListField(child=serializers.DictField())
    thresholds = serializers.ListField(child=serializers.DictField())
    hash = serializers.CharField()
