"""/api/v1/: one router for every app's API."""

from django.urls import path
from rest_framework.routers import DefaultRouter

from agents.api import views as agent_views
from approvals import api as approvals_api
from autonomy.api import actions, interventions, operations
from workflows.api import coordination as coordination_api
from workflows.api import tasks as tasks_api

router = DefaultRouter()
router.register("agents", agent_views.AgentViewSet, basename="agent")
router.register("business-units", agent_views.BusinessUnitViewSet, basename="business-unit")
router.register("roles", agent_views.RoleViewSet, basename="role")
router.register("credentials", agent_views.CredentialViewSet, basename="credential")
router.register("actions", actions.ActionViewSet, basename="action")
router.register("operations", operations.OperationViewSet, basename="operation")
router.register("interventions", interventions.InterventionViewSet, basename="intervention")
router.register("approvals", approvals_api.ApprovalViewSet, basename="approval")
router.register("claims", coordination_api.ClaimViewSet, basename="claim")
router.register("tasks", tasks_api.TaskViewSet, basename="task")
router.register("runs", tasks_api.RunViewSet, basename="run")
router.register(
    r"runs/(?P<run_id>[0-9a-fA-F-]{36})/messages",
    coordination_api.RunMessageViewSet,
    basename="run-message",
)

urlpatterns = [
    path("simulate/", actions.SimulateView.as_view(), name="simulate"),
    path(
        "actions/<uuid:pk>/override/",
        interventions.ActionOverrideView.as_view(),
        name="action-override",
    ),
    *router.urls,
]
