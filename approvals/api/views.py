"""/api/v1/approvals/: people who approve from chat tools list and decide here.
Session or token auth of a human user; agents may never approve."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents.api.permissions import IsPerson
from approvals import groups, selectors, services, suggestions
from approvals.api.serializers import (
    ApprovalSerializer,
    DecideSerializer,
    GroupDecideSerializer,
    GroupOutcomeSerializer,
    GroupSerializer,
    SuggestionSerializer,
)
from approvals.models import ApprovalRequest, Channel, Suggestion
from autonomy.errors import DomainError, ErrorCode


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
        return Response(
            ApprovalSerializer(
                selectors.approval_detail(request_id=pk), context=self.get_serializer_context()
            ).data
        )


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


class IsPolicyOwner(IsPerson):
    """People who may change policies (``approvals.suggestions.may_review``)."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False  # anonymous: 401; an agent: 403 from IsPerson
        if not suggestions.may_review(user=request.user):
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "Suggestions are for people who may change policies.",
                status_code=403,
            )
        return True


class SuggestionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Open suggestions from history, the largest expected fall in inbox load first."""

    serializer_class = SuggestionSerializer
    permission_classes = [IsPolicyOwner]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Suggestion.objects.none()
        return selectors.suggestions_open()

    def list(self, request, *args, **kwargs):
        page = self.paginate_queryset(self.get_queryset())
        rows = [selectors.suggestion_summary(s) for s in page]
        return self.get_paginated_response(self.get_serializer(rows, many=True).data)
