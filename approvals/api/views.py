"""/api/v1/approvals/: people who approve from chat tools list and decide here.
Session or token auth of a human user; agents may never approve."""

from django.contrib.auth.models import Group
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents.api.permissions import IsPerson
from approvals import selectors, services
from approvals.models import ApprovalRequest, Channel, Decision, Verdict
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


class ApprovalViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ApprovalSerializer
    permission_classes = [IsPerson]
    filterset_fields = ["status", "business_unit__slug"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApprovalRequest.objects.none()
        status = self.request.query_params.get("status", "pending")
        return selectors.inbox_for_user(user=self.request.user, status=status)

    @extend_schema(request=DecideSerializer, responses=ApprovalSerializer)
    @action(detail=True, methods=["post"])
    def decide(self, request, pk=None):
        data = DecideSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        services.approval_decide(
            request_id=pk,
            approver=request.user,
            verdict=values["verdict"],
            channel=Channel.API,
            comment=values["comment"],
            params=values["params"],
            redirect_to=values["redirect_to"],
        )
        return Response(ApprovalSerializer(selectors.approval_detail(request_id=pk)).data)
