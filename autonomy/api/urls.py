"""/api/v1/: the kernel's endpoints (actions, operations, autonomy settings, rollouts,
simulate, memory). Each app includes its own from ``<app>/api/urls.py`` (``config/urls.py``)."""

from django.urls import path

from autonomy.api import actions, levels, memory, operations, rollouts
from autonomy.api.routers import APIRouter

router = APIRouter()
router.register("actions", actions.ActionViewSet, basename="action")
router.register("operations", operations.OperationViewSet, basename="operation")
router.register("rollouts", rollouts.RolloutPlanViewSet, basename="rollout")
router.register("autonomy-settings", levels.AutonomySettingViewSet, basename="autonomy-setting")
router.register("memory", memory.MemoryEntryViewSet, basename="memory-entry")

urlpatterns = [
    path("simulate/", actions.SimulateView.as_view(), name="simulate"),
    *router.urls,
]
