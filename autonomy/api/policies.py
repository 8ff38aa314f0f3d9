"""/api/v1/policies/: Cedar policies for IdP/CMDB-driven governance. Everyone with the view
permission reads them; only policy owners (``may_change_policy``) write, and every write goes
through ``policy_save`` / ``policy_delete``: the one validation against the registry's
schema, so an invalid text is a 400 ``validation_failed`` naming the errors, and nothing is
saved."""

from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.exceptions import PermissionDenied
from rest_framework.response import Response

from agents.api.permissions import IsPerson, RegistryModelPermissions
from autonomy.api.routers import INTEGER_ID
from autonomy.api.serializers import StrictSerializer
from autonomy.models import Policy
from autonomy.policy import services


class PolicySerializer(serializers.ModelSerializer):
    author = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Policy
        fields = [
            "id", "name", "description", "text", "enabled", "version", "author", "created_at",
            "updated_at",
        ]  # fmt: skip
        read_only_fields = fields


class PolicyWriteSerializer(StrictSerializer):
    name = serializers.CharField(max_length=160)
    description = serializers.CharField(required=False, default="", allow_blank=True)
    text = serializers.CharField(max_length=200_000, help_text="Cedar policy statements")
    enabled = serializers.BooleanField(required=False, default=False)


class PolicyPermissions(RegistryModelPermissions):
    """Reads: the model's view permission. Writes: policy owners only."""

    def has_permission(self, request, view):
        if request.method in ("GET", "HEAD", "OPTIONS"):
            return super().has_permission(request, view)
        if not services.may_change_policy(user=request.user):
            raise PermissionDenied("Only policy owners change policies.")
        return True


class PolicyViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    serializer_class = PolicySerializer
    lookup_value_regex = INTEGER_ID
    permission_classes = [IsPerson, PolicyPermissions]
    filterset_fields = ["enabled", "name"]
    search_fields = ["name", "description"]
    ordering_fields = ["name", "updated_at"]

    def get_queryset(self):
        return Policy.objects.select_related("author").order_by("name")

    @extend_schema(request=PolicyWriteSerializer, responses={201: PolicySerializer})
    def create(self, request):
        data = PolicyWriteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        policy = services.policy_save(by=request.user, **data.validated_data)
        return Response(PolicySerializer(policy).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=PolicyWriteSerializer, responses=PolicySerializer)
    def partial_update(self, request, pk=None):
        policy = self.get_object()
        data = PolicyWriteSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        values = {
            "name": policy.name, "description": policy.description, "text": policy.text,
            "enabled": policy.enabled, **data.validated_data,
        }  # fmt: skip
        policy = services.policy_save(policy=policy, by=request.user, **values)
        return Response(PolicySerializer(policy).data)

    def destroy(self, request, pk=None):
        services.policy_delete(policy=self.get_object(), by=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)
