"""/api/v1/approvals/: people who approve from chat tools list and decide here.
Session or token auth of a human user; agents may never approve."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents.api.permissions import IsPerson
from approvals import groups, selectors, services
from approvals.api.serializers import (
    ApprovalSerializer,
    DecideSerializer,
    GroupDecideSerializer,
    GroupOutcomeSerializer,
    GroupSerializer,
)
from approvals.models import ApprovalRequest, Channel


class ApprovalViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    serializer_class = ApprovalSerializer
    permission_classes = [IsPerson]
    filterset_fields = ["status", "business_unit__slug"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApprovalRequest.objects.none()
        status = self.request.query_params.get("status", "pending")
        return selectors.inbox_for_user(user=self.request.user, status=status).prefetch_related(
            *selectors.STAGE_HISTORY_PREFETCH
        )

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


class ApprovalGroupViewSet(viewsets.GenericViewSet):
    """The grouped inbox: similar waiting requests, each group decided in one call."""

    serializer_class = GroupSerializer
    permission_classes = [IsPerson]
    lookup_field = "key"
    lookup_value_regex = r"op-\d+\.role-\d+\.unit-\d+\.risk-(?:low|medium|high)"

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return ApprovalRequest.objects.none()
        return groups.inbox_groups(user=self.request.user).groups

    def list(self, request):
        page = self.paginate_queryset(self.get_queryset())
        return self.get_paginated_response(
            GroupSerializer(groups.groups_named(page), many=True).data
        )

    @extend_schema(request=GroupDecideSerializer, responses=GroupOutcomeSerializer)
    @action(detail=True, methods=["post"])
    def decide(self, request, key=None):
        data = GroupDecideSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = data.validated_data
        outcome = services.approvals_decide_group(
            approver=request.user,
            key=key,
            verdict=values["verdict"],
            channel=Channel.API,
            until=values["until"],
            comment=values["comment"],
            exclude=values["exclude"],
        )
        return Response(GroupOutcomeSerializer(outcome).data)
