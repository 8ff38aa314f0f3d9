"""/api/v1/rollouts/: rollout plans for people — every plan, one plan with its live health,
and the two ways a person steers one (propose a promotion, demote a wave).

Thin: reads from ``autonomy.rollouts.selectors``; writes through
``autonomy.rollouts.services``, whose ``may_steer`` is the one rule of who steers. Agents
read their own plans at ``/api/v1/agents/me/``, never here.
"""

from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from agents.api.permissions import IsPerson
from autonomy.api.serializers import StrictSerializer
from autonomy.errors import DomainError, ErrorCode
from autonomy.models import RolloutPlan, RolloutPromotion, RolloutWave
from autonomy.rollouts import selectors, services


class RolloutWaveSerializer(serializers.ModelSerializer):
    agents = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="slug", help_text="the agents it names"
    )
    business_units = serializers.SlugRelatedField(
        many=True, read_only=True, slug_field="slug", help_text="the units whose agents it reaches"
    )

    class Meta:
        model = RolloutWave
        fields = [
            "number", "name", "level", "everyone", "agents", "business_units", "min_actions",
            "max_denial_ratio", "max_failure_ratio", "max_open_drift_flags", "max_override_ratio",
            "guard_failures", "guard_window_minutes", "guard_drift_flag",
        ]  # fmt: skip
        read_only_fields = fields


class RolloutPromotionSerializer(serializers.ModelSerializer):
    plan = serializers.CharField(source="plan.slug", read_only=True)
    proposed_by = serializers.CharField(
        source="proposed_by.username", default=None, allow_null=True, read_only=True,
        help_text="null: proposed by the measuring beat",
    )  # fmt: skip
    figures = serializers.JSONField(read_only=True, help_text="the plan's health when proposed")

    class Meta:
        model = RolloutPromotion
        fields = [
            "id", "plan", "from_wave", "to_wave", "status", "figures", "proposed_by",
            "created_at", "decided_at",
        ]  # fmt: skip
        read_only_fields = fields


class RolloutFiguresSerializer(serializers.Serializer):
    """The record of the agents the current wave reaches, over the plan's window."""

    wave = serializers.IntegerField()
    window_minutes = serializers.IntegerField()
    since = serializers.DateTimeField()
    at = serializers.DateTimeField()
    agents = serializers.IntegerField()
    actions = serializers.IntegerField()
    denied = serializers.IntegerField()
    denial_ratio = serializers.FloatField(allow_null=True)
    executed = serializers.IntegerField()
    failed = serializers.IntegerField()
    failure_ratio = serializers.FloatField(allow_null=True, help_text="of those executed")
    open_drift_flags = serializers.IntegerField()
    answered = serializers.IntegerField()
    overridden = serializers.IntegerField()
    override_ratio = serializers.FloatField(allow_null=True, help_text="of those people answered")


class RolloutCriterionSerializer(serializers.Serializer):
    name = serializers.CharField()
    label = serializers.CharField()
    value = serializers.FloatField(allow_null=True, help_text="null: no sample yet")
    threshold = serializers.FloatField()
    at_least = serializers.BooleanField(help_text="the value must be at least the threshold")
    met = serializers.BooleanField()


class RolloutHealthSerializer(serializers.Serializer):
    figures = RolloutFiguresSerializer()
    next_wave = serializers.IntegerField(allow_null=True, help_text="null: at the last wave")
    criteria = RolloutCriterionSerializer(many=True, help_text="the next wave's entry criteria")
    met = serializers.BooleanField(help_text="whether they all hold")


class RolloutPlanSerializer(serializers.ModelSerializer):
    role = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)
    current_level = serializers.CharField(
        read_only=True, allow_null=True, help_text="the current wave's level; null: not started"
    )
    waves = RolloutWaveSerializer(many=True, read_only=True)
    pending_promotion = serializers.SerializerMethodField()
    measured_at = serializers.DateTimeField(
        read_only=True, allow_null=True, help_text="the last measurement by the beat"
    )
    measured_met = serializers.BooleanField(
        read_only=True, allow_null=True,
        help_text="whether the next wave's criteria held at the last measurement",
    )  # fmt: skip

    class Meta:
        model = RolloutPlan
        fields = [
            "slug", "name", "description", "role", "template_key", "operations", "held_level",
            "current_wave", "current_level", "wave_since", "window_minutes", "auto_propose",
            "active", "waves", "pending_promotion", "measured_at", "measured_met", "created_at",
        ]  # fmt: skip
        read_only_fields = fields

    @extend_schema_field(RolloutPromotionSerializer(allow_null=True))
    def get_pending_promotion(self, plan):
        waiting = plan.pending_promotions
        return RolloutPromotionSerializer(waiting[0]).data if waiting else None


class RolloutPlanDetailSerializer(RolloutPlanSerializer):
    health = RolloutHealthSerializer(
        read_only=True, help_text="measured now: the current wave's figures, the next wave's"
    )

    class Meta(RolloutPlanSerializer.Meta):
        fields = [*RolloutPlanSerializer.Meta.fields, "health"]
        read_only_fields = fields


class DemoteSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000, help_text="why; kept in the plan's history")
    from_wave = serializers.IntegerField(
        required=False,
        min_value=0,
        help_text="the wave you saw; when the plan has moved since, nothing moves (409)",
    )


class MayViewRollouts(IsPerson):
    """People who may view rollout plans; agents never (403), whatever their user's groups."""

    def has_permission(self, request, view):
        if not super().has_permission(request, view):
            return False
        if not services.may_view(user=request.user):
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "You need the permission to view rollout plans.",
                status_code=403,
            )
        return True


class RolloutPlanViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Rollout plans: their waves, the wave they are at and, for one plan, its health now."""

    serializer_class = RolloutPlanSerializer
    permission_classes = [MayViewRollouts]
    lookup_field = "slug"
    lookup_value_regex = r"[-a-zA-Z0-9_]+"
    filterset_fields = ["active", "held_level"]
    ordering_fields = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]

    def get_queryset(self):
        return selectors.plan_list()

    def get_serializer_class(self):
        if self.action == "list":
            return RolloutPlanSerializer
        return RolloutPlanDetailSerializer

    def get_object(self) -> RolloutPlan:
        plan = selectors.plan_by_slug(slug=self.kwargs["slug"])
        if plan is None:
            raise NotFound("No such rollout plan.")
        self.check_object_permissions(self.request, plan)
        return plan

    def _detail(self, plan: RolloutPlan, *, status_code=status.HTTP_200_OK) -> Response:
        plan.health = selectors.plan_health(plan=plan)
        return Response(RolloutPlanDetailSerializer(plan).data, status=status_code)

    def retrieve(self, request, slug=None):
        return self._detail(self.get_object())

    @extend_schema(
        request=None,
        responses={201: RolloutPromotionSerializer, 200: RolloutPromotionSerializer},
    )
    @action(detail=True, methods=["post"])
    def promotions(self, request, slug=None):
        """Propose moving the plan up one wave: 201 with the promotion, which waits for an
        approval; 200 with the one already waiting; 409 ``rollout_criteria_not_met`` with the
        criteria when the next wave's do not hold."""
        plan = self.get_object()
        waiting = {p.pk for p in plan.pending_promotions}
        promotion = services.promotion_propose(plan_id=plan.pk, by=request.user)
        promotion = RolloutPromotion.objects.select_related("plan", "proposed_by").get(
            pk=promotion.pk
        )
        code = status.HTTP_200_OK if promotion.pk in waiting else status.HTTP_201_CREATED
        return Response(RolloutPromotionSerializer(promotion).data, status=code)

    @extend_schema(request=DemoteSerializer, responses=RolloutPlanDetailSerializer)
    @action(detail=True, methods=["post"])
    def demote(self, request, slug=None):
        """Move the plan down one wave, with the reason; a waiting promotion is void."""
        plan = self.get_object()
        data = DemoteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.plan_demote(
            plan_id=plan.pk,
            by=request.user,
            reason=data.validated_data["reason"],
            from_wave=data.validated_data.get("from_wave"),
        )
        return self._detail(selectors.plan_by_slug(slug=plan.slug))
