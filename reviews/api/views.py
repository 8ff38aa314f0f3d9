"""/api/v1/reviews/ and /api/v1/reviews/{id}/answer/: access reviews for people.

Thin: check the person, read through ``reviews.selectors``, answer through
``reviews.services``. Agents are refused, whatever groups their service user has.
"""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents.api.permissions import IsPerson
from autonomy.api.routers import INTEGER_ID
from autonomy.api.serializers import StrictSerializer
from autonomy.errors import DomainError, ErrorCode
from reviews import selectors, services
from reviews.models import AccessReview, Decision, ReviewItem


class ReviewItemSerializer(serializers.ModelSerializer):
    agent = serializers.CharField(source="agent.slug")
    operation = serializers.CharField(source="operation.key", default=None, allow_null=True)
    connector = serializers.CharField(source="connector.slug", default=None, allow_null=True)
    credential = serializers.CharField(source="credential.prefix", default=None, allow_null=True)
    decided_by = serializers.CharField(source="decided_by.username", default=None, allow_null=True)

    class Meta:
        model = ReviewItem
        fields = [
            "id", "kind", "agent", "operation", "connector", "credential", "evidence",
            "decision", "decided_by", "decided_at", "comment",
        ]  # fmt: skip
        read_only_fields = fields


class AccessReviewSerializer(serializers.ModelSerializer):
    business_unit = serializers.CharField(source="business_unit.slug")
    reviewer_group = serializers.CharField(
        source="reviewer_group.name", default=None, allow_null=True
    )
    items = serializers.IntegerField(source="item_count", read_only=True)
    pending = serializers.IntegerField(source="pending_count", read_only=True)

    class Meta:
        model = AccessReview
        fields = [
            "id", "business_unit", "period", "status", "opened_at", "due_at", "escalated_at",
            "completed_at", "reviewer_group", "dormant_days", "unused_days", "expiring_days",
            "items", "pending",
        ]  # fmt: skip
        read_only_fields = fields


class AccessReviewDetailSerializer(AccessReviewSerializer):
    answers = ReviewItemSerializer(source="items.all", many=True, read_only=True)

    class Meta(AccessReviewSerializer.Meta):
        fields = [*AccessReviewSerializer.Meta.fields, "answers"]
        read_only_fields = fields


class AnswerSerializer(StrictSerializer):
    items = serializers.ListField(child=serializers.IntegerField(min_value=1), min_length=1)
    decision = serializers.ChoiceField(choices=[Decision.KEEP, Decision.REVOKE])
    comment = serializers.CharField(
        max_length=services.COMMENT_MAX, required=False, allow_blank=True, default=""
    )


class MayReadReviews(IsPerson):
    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if not (
            selectors.may_view(user=request.user)
            or selectors.reviews_for_user(user=request.user).exists()
        ):
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "Access reviews are for risk officers, IT admins, auditors and a unit's reviewers.",
                status_code=403,
            )
        return True


class AccessReviewViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Access reviews the person may read, newest first, with their counts; one review with
    its items; bulk keep or revoke."""

    serializer_class = AccessReviewSerializer
    lookup_value_regex = INTEGER_ID
    permission_classes = [MayReadReviews]
    filterset_fields = ["status", "period"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return AccessReview.objects.none()
        return selectors.reviews_for_user(user=self.request.user)

    def get_serializer_class(self):
        if self.action in ("retrieve", "answer"):
            return AccessReviewDetailSerializer
        return AccessReviewSerializer

    def retrieve(self, request, *args, **kwargs):
        review = self.get_object()
        items = [i for group in selectors.review_items(review=review).values() for i in group]
        data = AccessReviewSerializer(review).data
        data["answers"] = ReviewItemSerializer(items, many=True).data
        return Response(data)

    @extend_schema(request=AnswerSerializer, responses={200: ReviewItemSerializer(many=True)})
    @action(detail=True, methods=["post"])
    def answer(self, request, pk=None):
        """Keep or revoke items of this review at once; all or none are answered."""
        review = self.get_object()
        if not selectors.may_answer(user=request.user, review=review):
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "Only risk officers, IT admins and the unit's reviewers answer reviews.",
                status_code=403,
            )
        data = AnswerSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        items = services.review_answer(
            review=review,
            item_ids=data.validated_data["items"],
            decision=data.validated_data["decision"],
            by=request.user,
            comment=data.validated_data["comment"],
        )
        return Response(ReviewItemSerializer(items, many=True).data)
