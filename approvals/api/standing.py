"""/api/v1/standing-approvals/: standing approvals for people — list, read, grant, revoke.

Thin: reads from ``autonomy.standing.selectors``; grants go through
``approvals.services.standing_approval_grant`` (``may_grant``, the one rule of who may, and
the source request's asker looked up one way), revocations through
``autonomy.standing.services.standing_revoke``. Every portal role reads them; risk officers
and IT admins (who hold the policy-change permission) grant and revoke.
"""

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents.api.permissions import IsPerson, RegistryModelPermissions
from agents.models import Agent, BusinessUnit, Role
from approvals import services
from autonomy import selectors as autonomy_selectors
from autonomy.api.serializers import StrictSerializer
from autonomy.models import StandingApproval
from autonomy.standing import selectors
from autonomy.standing import services as standing_services

STATES = ("active", "expired", "revoked")


class StandingApprovalSerializer(serializers.ModelSerializer):
    operation = serializers.CharField(source="operation.key", read_only=True)
    agent = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    role = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    business_unit = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    scope = serializers.CharField(read_only=True, help_text='"role clerk in business unit it"')
    summary = serializers.CharField(read_only=True)
    state = serializers.SerializerMethodField(help_text="active, scheduled, expired or revoked")
    granted_by = serializers.CharField(source="granted_by.username", read_only=True)
    revoked_by = serializers.CharField(
        source="revoked_by.username", read_only=True, allow_null=True, default=None
    )

    class Meta:
        model = StandingApproval
        fields = [
            "id", "operation", "scope", "agent", "role", "business_unit", "summary", "state",
            "max_risk", "max_amount", "daily_limit", "starts_at", "expires_at", "granted_by",
            "reason", "source_request_id", "revoked_at", "revoked_by", "revoke_reason",
            "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    def get_state(self, standing: StandingApproval) -> str:
        return standing.state(timezone.now())


class StandingGrantSerializer(StrictSerializer):
    operation = serializers.CharField(max_length=200, help_text="<connector>.<operation>")
    agent = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Agent.objects.all(),
        required=False,
        default=None,
        allow_null=True,
    )
    role = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=Role.objects.all(),
        required=False,
        default=None,
        allow_null=True,
    )
    business_unit = serializers.SlugRelatedField(
        slug_field="slug",
        queryset=BusinessUnit.objects.all(),
        required=False,
        default=None,
        allow_null=True,
    )
    max_risk = serializers.IntegerField(min_value=0, max_value=100)
    max_amount = serializers.DecimalField(
        max_digits=18, decimal_places=2, min_value=0, required=False, default=None, allow_null=True
    )
    daily_limit = serializers.IntegerField(
        min_value=1, required=False, default=None, allow_null=True
    )
    days = serializers.IntegerField(min_value=1, max_value=standing_services.MAX_DAYS)
    reason = serializers.CharField(max_length=500)
    source = serializers.UUIDField(
        required=False,
        default=None,
        allow_null=True,
        help_text="the approval request it is granted from",
    )

    def validate_operation(self, key: str):
        operation = autonomy_selectors.operation_by_key(key=key)
        if operation is None:
            raise serializers.ValidationError(f"No operation {key!r}.")
        return operation


class StandingRevokeSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=500)


class StandingApprovalViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Standing approvals, newest first; ``?state=active|expired|revoked``."""

    serializer_class = StandingApprovalSerializer
    permission_classes = [IsPerson, RegistryModelPermissions]
    lookup_value_regex = r"[0-9]+"

    def get_queryset(self):
        state = self.request.query_params.get("state", "")
        return selectors.listing(state=state if state in STATES else "")

    @extend_schema(
        parameters=[OpenApiParameter("state", OpenApiTypes.STR, enum=list(STATES))],
    )
    def list(self, request, *args, **kwargs):
        return super().list(request, *args, **kwargs)

    @extend_schema(request=StandingGrantSerializer, responses={201: StandingApprovalSerializer})
    def create(self, request):
        data = StandingGrantSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        standing = services.standing_approval_grant(
            by=request.user, source_request_id=values.pop("source"), **values
        )
        standing = selectors.standing_detail(standing_id=standing.pk)
        return Response(StandingApprovalSerializer(standing).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=StandingRevokeSerializer, responses=StandingApprovalSerializer)
    @action(detail=True, methods=["post"])
    def revoke(self, request, pk=None):
        data = StandingRevokeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        standing = self.get_object()
        standing_services.standing_revoke(
            standing_id=standing.pk, by=request.user, reason=data.validated_data["reason"]
        )
        return Response(
            StandingApprovalSerializer(selectors.standing_detail(standing_id=standing.pk)).data
        )
