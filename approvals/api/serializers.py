"""The shapes of /api/v1/approvals/: a request with its decisions, and a decision to make."""

from django.contrib.auth.models import Group
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from agents.models import RegistryChange
from approvals import selectors
from approvals.models import ApprovalKind, ApprovalRequest, Decision, StageStatus, Verdict
from autonomy import masking
from autonomy.api.serializers import MaskedJSONField, StrictSerializer
from autonomy.models import RolloutPromotion


class DecisionSerializer(serializers.ModelSerializer):
    approver = serializers.CharField(source="approver.username")
    params = serializers.SerializerMethodField()

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_params(self, decision: Decision):
        """Parameters the approver changed, masked like the action's (``autonomy.masking``)."""
        if decision.params is None:
            return None
        viewer = getattr(self.context.get("request"), "user", None)
        action = decision.request.action
        return masking.mask(action.operation, decision.params, viewer=viewer, action=action)

    class Meta:
        model = Decision
        fields = ["approver", "stage", "verdict", "comment", "channel", "params", "created_at"]


class StageSerializer(serializers.Serializer):
    """One stage of a routed request: who decides it, its state, and who decided it."""

    number = serializers.IntegerField()
    name = serializers.CharField()
    approvers = serializers.CharField()
    quorum = serializers.IntegerField()
    status = serializers.ChoiceField(choices=StageStatus.choices)
    current = serializers.BooleanField()
    started_at = serializers.DateTimeField(allow_null=True)
    decided_at = serializers.DateTimeField(allow_null=True)
    decisions = DecisionSerializer(many=True)


class PromotionSerializer(serializers.ModelSerializer):
    """A rollout plan's proposed move up one wave, with the figures measured for it."""

    plan = serializers.CharField(source="plan.slug")
    figures = serializers.JSONField()

    class Meta:
        model = RolloutPromotion
        fields = ["id", "plan", "from_wave", "to_wave", "figures"]


class RegistryChangeSerializer(serializers.ModelSerializer):
    """A registry change that takes effect when approved: what it asks (``payload``: the
    tiers, or the grant's target and grantee) and the state of its agent now."""

    agent = serializers.CharField(source="agent.slug", allow_null=True)
    agent_status = serializers.CharField(source="agent.status", allow_null=True)
    role = serializers.CharField(source="role.slug", allow_null=True)

    class Meta:
        model = RegistryChange
        fields = ["id", "kind", "summary", "agent", "agent_status", "role", "payload", "status"]


class ApprovalSerializer(serializers.ModelSerializer):
    """One request. ``kind`` says what waits: an agent's ``action`` (its agent, operation,
    parameters and risk), a rollout plan's ``promotion`` or a registry ``change``; the
    others' fields are null."""

    kind = serializers.ChoiceField(choices=ApprovalKind.choices, read_only=True)
    agent = serializers.CharField(source="agent.slug", allow_null=True)
    owner = serializers.CharField(source="agent.owner.username", allow_null=True)
    business_unit = serializers.CharField(source="business_unit.slug", allow_null=True)
    approvers = serializers.CharField(source="approver_group.name")
    requested_by = serializers.CharField(source="requested_by.username", allow_null=True)
    action = serializers.UUIDField(source="action_id", allow_null=True)
    operation = serializers.CharField(source="action.operation.key", allow_null=True)
    params = MaskedJSONField(source="action", allow_null=True)
    reason = serializers.CharField(source="action.reason", allow_null=True)
    risk_factors = serializers.JSONField(source="action.risk_factors", allow_null=True)
    gate_reasons = serializers.SerializerMethodField()
    promotion = PromotionSerializer(allow_null=True, read_only=True)
    change = RegistryChangeSerializer(allow_null=True, read_only=True)
    route = serializers.CharField(
        source="route_label", help_text="The rule that routed it; empty: the built-in default."
    )
    stage_name = serializers.CharField()
    stage_history = serializers.SerializerMethodField()

    class Meta:
        model = ApprovalRequest
        fields = [
            "id", "kind", "subject", "agent", "owner", "business_unit", "approvers",
            "requested_by", "action", "operation", "params", "reason", "risk_score",
            "risk_factors", "gate_reasons", "promotion", "change", "quorum", "approvals", "status",
            "expires_at", "escalated_at", "created_at", "decided_at", "route", "stage",
            "stages", "stage_name", "stage_history",
        ]  # fmt: skip

    @extend_schema_field(serializers.JSONField(allow_null=True))
    def get_gate_reasons(self, approval: ApprovalRequest):
        """The gate's reasons; content matches quoted from a sensitive parameter masked."""
        if approval.action is None:
            return None
        viewer = getattr(self.context.get("request"), "user", None)
        return masking.reasons_for(approval.action, viewer=viewer)

    @extend_schema_field(StageSerializer(many=True))
    def get_stage_history(self, approval: ApprovalRequest) -> list:
        """Each stage and who decided it (empty for a request no route staged)."""
        if not approval.routed:
            return []
        return StageSerializer(
            selectors.stage_history(approval), many=True, context=self.context
        ).data


class DecideSerializer(StrictSerializer):
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    params = serializers.JSONField(required=False, default=None)
    redirect_to = serializers.SlugRelatedField(
        slug_field="name", queryset=Group.objects.all(), required=False, default=None
    )


class GroupSerializer(serializers.Serializer):
    """A group of similar waiting requests (``approvals.groups``): the same operation, agent
    role and business unit in one risk band. ``newest`` is what ``decide`` takes as
    ``until``: members that arrive later are never decided unseen."""

    key = serializers.CharField()
    size = serializers.IntegerField()
    operation = serializers.CharField(source="operation.key")
    operation_name = serializers.CharField(source="operation.name")
    role = serializers.CharField(source="role.slug")
    business_unit = serializers.CharField(source="unit.slug")
    risk_band = serializers.CharField(source="band")
    risk_min = serializers.IntegerField()
    risk_max = serializers.IntegerField()
    agents = serializers.IntegerField()
    oldest = serializers.DateTimeField()
    newest = serializers.DateTimeField()


class GroupDecideSerializer(StrictSerializer):
    verdict = serializers.ChoiceField(choices=[Verdict.APPROVE, Verdict.REJECT])
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    until = serializers.DateTimeField(
        help_text="The group's ``newest`` as listed: later members are left waiting."
    )
    exclude = serializers.ListField(
        child=serializers.UUIDField(), required=False, default=list, max_length=1000
    )


class GroupOutcomeSerializer(serializers.Serializer):
    decided = serializers.IntegerField()
    settled = serializers.IntegerField()
    waiting = serializers.IntegerField()
    skipped = serializers.ListField(child=serializers.CharField())


class SuggestionSerializer(serializers.Serializer):
    """One open suggestion from history (``approvals.selectors.suggestion_summary``)."""

    id = serializers.IntegerField()
    kind = serializers.CharField()
    operation = serializers.CharField()
    role = serializers.CharField()
    business_unit = serializers.CharField()
    headline = serializers.CharField()
    per_day = serializers.FloatField(help_text="expected fall in inbox load: requests a day")
    inbox_share = serializers.FloatField(help_text="of all requests that waited in the window")
    evidence = serializers.JSONField()
    simulation = serializers.JSONField()
    updated_at = serializers.DateTimeField()
