"""The shapes of /api/v1/approvals/: a request with its decisions, and a decision to make."""

from django.contrib.auth.models import Group
from rest_framework import serializers

from approvals.models import ApprovalRequest, Decision, Verdict
from autonomy.api.serializers import StrictSerializer


class DecisionSerializer(serializers.ModelSerializer):
    approver = serializers.CharField(source="approver.username")

    class Meta:
        model = Decision
        fields = ["approver", "verdict", "comment", "channel", "params", "created_at"]


class ApprovalSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.slug")
    owner = serializers.CharField(source="agent.owner.username")
    business_unit = serializers.CharField(source="business_unit.slug")
    approvers = serializers.CharField(source="approver_group.name")
    action = serializers.UUIDField(source="action_id")
    operation = serializers.CharField(source="action.operation.key")
    params = serializers.JSONField(source="action.params")
    reason = serializers.CharField(source="action.reason")
    risk_factors = serializers.JSONField(source="action.risk_factors")
    gate_reasons = serializers.JSONField(source="action.reasons")

    class Meta:
        model = ApprovalRequest
        fields = [
            "id", "subject", "agent", "owner", "business_unit", "approvers", "action",
            "operation", "params", "reason", "risk_score", "risk_factors", "gate_reasons",
            "quorum", "approvals", "status", "expires_at", "escalated_at", "created_at",
            "decided_at",
        ]  # fmt: skip


class DecideSerializer(StrictSerializer):
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    params = serializers.JSONField(required=False, default=None)
    redirect_to = serializers.SlugRelatedField(
        slug_field="name", queryset=Group.objects.all(), required=False, default=None
    )
