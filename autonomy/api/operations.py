"""/api/v1/operations/: the operations the calling agent may call, with their parameter
schemas, so a REST agent discovers its tools as an MCP client does (``tools/list``). Both
list ``autonomy.grants.operations_callable``."""

from rest_framework import mixins, serializers, viewsets
from rest_framework.exceptions import NotFound

from agents.api.permissions import IsAgent, request_agent
from agents.models import Scope
from autonomy import grants
from autonomy.models import Operation


class OperationSerializer(serializers.ModelSerializer):
    key = serializers.CharField(read_only=True, help_text="<connector>.<operation>: what to ask")
    connector = serializers.CharField(source="connector.slug", read_only=True)
    params_schema = serializers.JSONField(
        read_only=True, help_text="JSON Schema the action's params must satisfy"
    )

    class Meta:
        model = Operation
        fields = [
            "key", "connector", "name", "description", "params_schema", "sensitivity",
            "data_class", "pii", "financial",
        ]  # fmt: skip
        read_only_fields = fields


class OperationViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The calling agent's callable operations: granted (to it or its role, on the operation
    or its connector) and enabled. Any other operation is simply not found."""

    serializer_class = OperationSerializer
    permission_classes = [IsAgent(scope=Scope.AGENT_READ)]
    lookup_field = "key"
    lookup_value_regex = r"[^/]+\.[^/]+"
    ordering_fields = ["key"]
    filterset_fields = ["sensitivity", "data_class"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Operation.objects.none()
        return grants.operations_callable(agent=request_agent(self.request))

    def get_object(self):
        connector, _, slug = self.kwargs["key"].partition(".")
        obj = self.get_queryset().filter(connector__slug=connector, slug=slug).first()
        if obj is None:
            raise NotFound("No such operation among those this agent may call.")
        self.check_object_permissions(self.request, obj)
        return obj
