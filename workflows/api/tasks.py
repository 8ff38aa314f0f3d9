"""/api/v1/tasks/ and /api/v1/runs/: how an agent takes part in workflows.

An agent pulls the next task offered to it (or its role), claims it, reads what its step may
see, and completes, hands off, escalates or fails it. Every answer about another agent's task
is ``task_not_yours``; every error is the one JSON shape.
"""

from django.db.models import Q
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.response import Response

from agents.api.permissions import IsAgent, request_agent
from agents.models import Agent, Scope
from autonomy.api.serializers import StrictSerializer
from autonomy.errors import DomainError, ErrorCode
from workflows import authoring, services
from workflows.models import Run, StepRun, StepStatus


class TaskSerializer(serializers.ModelSerializer):
    run = serializers.UUIDField(source="run_id")
    template = serializers.CharField(source="run.template.key")
    step = serializers.CharField(source="step.key")
    name = serializers.CharField(source="step.name")
    instructions = serializers.CharField(source="step.instructions")
    assignee = serializers.SlugRelatedField(slug_field="slug", read_only=True, allow_null=True)

    class Meta:
        model = StepRun
        fields = [
            "id",
            "run",
            "template",
            "step",
            "name",
            "instructions",
            "status",
            "assignee",
            "attempt",
            "input",
            "output",
            "claimed_at",
            "lease_until",
        ]
        read_only_fields = fields


class CompleteSerializer(StrictSerializer):
    output = serializers.JSONField(default=dict)


class HandoffSerializer(StrictSerializer):
    agent = serializers.SlugField(max_length=100, help_text="The agent to hand the task to.")
    reason = serializers.CharField(max_length=2000, required=False, allow_blank=True, default="")


class ReasonSerializer(StrictSerializer):
    reason = serializers.CharField(max_length=2000)


class FailSerializer(StrictSerializer):
    message = serializers.CharField(max_length=2000)
    retryable = serializers.BooleanField(default=True)


def _task_queryset(agent: Agent):
    return StepRun.objects.select_related("run__template", "step", "assignee").filter(
        Q(assignee=agent) | Q(assignee__isnull=True, assignee_role_id=agent.role_id)
    )


class TaskViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """The agent's tasks: offered to it or its role, or taken by it."""

    serializer_class = TaskSerializer
    filterset_fields = ["status"]

    def get_permissions(self):
        read = self.action in ("list", "retrieve", "context")
        return [IsAgent(scope=Scope.AGENT_READ if read else Scope.TASKS_WRITE)]

    def _answer(self, step_run, code=status.HTTP_200_OK):
        step_run = StepRun.objects.select_related("run__template", "step", "assignee").get(
            pk=step_run.pk
        )
        return Response(TaskSerializer(step_run).data, status=code)

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return StepRun.objects.none()
        return _task_queryset(request_agent(self.request)).filter(
            status__in=[StepStatus.WAITING_AGENT, StepStatus.RUNNING, StepStatus.SUCCEEDED],
            step__kind="task",
        )

    @extend_schema(
        parameters=[OpenApiParameter("claim", bool, description="Claim it too (default true).")],
        responses={200: TaskSerializer, 204: None},
    )
    @action(detail=False, methods=["get", "post"])
    def next(self, request):
        """The oldest task offered to you, claimed for you; 204 when there is none."""
        claim = request.query_params.get("claim", "true").lower() not in ("0", "false", "no")
        step_run = services.task_next(agent=request_agent(request), claim=claim)
        if step_run is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return self._answer(step_run)

    @extend_schema(request=None, responses={200: TaskSerializer})
    @action(detail=True, methods=["post"])
    def claim(self, request, pk=None):
        return self._answer(services.task_claim(agent=request_agent(request), step_run_id=pk))

    @extend_schema(responses={200: dict})
    @action(detail=True, methods=["get"])
    def context(self, request, pk=None):
        """Your inputs and the run context keys your step may read."""
        return Response(services.task_context(agent=request_agent(request), step_run_id=pk))

    @extend_schema(request=CompleteSerializer, responses={200: TaskSerializer})
    @action(detail=True, methods=["post"])
    def complete(self, request, pk=None):
        data = CompleteSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        step_run = services.task_complete(
            agent=request_agent(request), step_run_id=pk, output=data.validated_data["output"]
        )
        return self._answer(step_run)

    @extend_schema(request=HandoffSerializer, responses={200: TaskSerializer})
    @action(detail=True, methods=["post"])
    def handoff(self, request, pk=None):
        data = HandoffSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        to = Agent.objects.filter(slug=data.validated_data["agent"]).first()
        if to is None:
            raise DomainError(
                ErrorCode.NOT_FOUND, "No such agent.", {"agent": data.validated_data["agent"]}, 404
            )
        step_run = services.task_handoff(
            agent=request_agent(request),
            step_run_id=pk,
            to=to,
            reason=data.validated_data["reason"],
        )
        return self._answer(step_run)

    @extend_schema(request=ReasonSerializer, responses={200: TaskSerializer})
    @action(detail=True, methods=["post"])
    def escalate(self, request, pk=None):
        data = ReasonSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        step_run = services.task_escalate(
            agent=request_agent(request), step_run_id=pk, reason=data.validated_data["reason"]
        )
        return self._answer(step_run)

    @extend_schema(request=FailSerializer, responses={200: TaskSerializer})
    @action(detail=True, methods=["post"])
    def fail(self, request, pk=None):
        data = FailSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        step_run = services.task_fail(
            agent=request_agent(request),
            step_run_id=pk,
            message=data.validated_data["message"],
            retryable=data.validated_data["retryable"],
        )
        return self._answer(step_run)


class RunStartSerializer(StrictSerializer):
    template = serializers.SlugField(max_length=80, help_text="Template key; its latest version.")
    context = serializers.JSONField(default=dict)


class RunSerializer(serializers.ModelSerializer):
    template = serializers.CharField(source="template.key")
    version = serializers.IntegerField(source="template.version")
    steps = serializers.SerializerMethodField()

    class Meta:
        model = Run
        fields = [
            "id",
            "template",
            "version",
            "status",
            "started_by",
            "created_at",
            "finished_at",
            "steps",
        ]
        read_only_fields = fields

    def get_steps(self, run) -> list[dict]:
        return [
            {
                "step": sr.step.key,
                "status": sr.status,
                "assignee": getattr(sr.assignee, "slug", None),
            }
            for sr in run.step_runs.all()
        ]


class RunViewSet(mixins.CreateModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Runs an agent started or takes part in; an agent may start runs of its unit's templates.

    The run's context is not shown here: a task's agent reads what its step may see.
    """

    serializer_class = RunSerializer

    def get_permissions(self):
        return [IsAgent(scope=Scope.TASKS_WRITE if self.action == "create" else Scope.AGENT_READ)]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):
            return Run.objects.none()
        agent = request_agent(self.request)
        return (
            Run.objects.filter(Q(started_by=agent.slug) | Q(step_runs__assignee=agent))
            .distinct()
            .select_related("template")
            .prefetch_related("step_runs__step", "step_runs__assignee")
        )

    @extend_schema(request=RunStartSerializer, responses={201: RunSerializer})
    def create(self, request):
        data = RunStartSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        agent = request_agent(request)
        template = authoring.latest_published(key=data.validated_data["template"])
        if template is None:
            raise DomainError(
                ErrorCode.NOT_FOUND,
                "No published template with this key.",
                {"template": data.validated_data["template"]},
                404,
            )
        if template.business_unit_id not in (None, agent.business_unit_id):
            raise DomainError(
                ErrorCode.PERMISSION_DENIED,
                "This template belongs to another business unit.",
                status_code=403,
            )
        key = request.headers.get("Idempotency-Key") or ""
        if len(key) > 150:
            raise DomainError(ErrorCode.VALIDATION_FAILED, "Idempotency-Key is too long.")
        run = services.run_start(
            template=template,
            context=data.validated_data["context"],
            by=agent,
            idempotency_key=f"{agent.pk}:{key}" if key else "",
        )
        run = (
            Run.objects.select_related("template")
            .prefetch_related("step_runs__step", "step_runs__assignee")
            .get(pk=run.pk)
        )
        return Response(RunSerializer(run).data, status=status.HTTP_201_CREATED)
