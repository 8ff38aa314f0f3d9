"""/api/v1/: the kernel's endpoints (actions, operations, autonomy settings, rollouts,
simulate, memory, policies, grants). Each app includes its own from ``<app>/api/urls.py``
(``config/urls.py``)."""

from django.urls import path

from autonomy.api import actions, grants, levels, memory, operations, policies, rollouts
from autonomy.api.routers import APIRouter

router = APIRouter()
router.register("actions", actions.ActionViewSet, basename="action")
router.register("operations", operations.OperationViewSet, basename="operation")
router.register("rollouts", rollouts.RolloutPlanViewSet, basename="rollout")
router.register("autonomy-settings", levels.AutonomySettingViewSet, basename="autonomy-setting")
router.register("memory", memory.MemoryEntryViewSet, basename="memory-entry")
router.register("policies", policies.PolicyViewSet, basename="policy")
router.register("grants", grants.GrantViewSet, basename="grant")

urlpatterns = [
    path("simulate/", actions.SimulateView.as_view(), name="simulate"),
    *router.urls,
]
