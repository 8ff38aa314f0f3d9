"""/api/v1/: the kernel's endpoints (actions, operations, rollouts, simulate). Each app
includes its own from ``<app>/api/urls.py`` (``config/urls.py``)."""

from django.urls import path

from autonomy.api import actions, operations, rollouts
from autonomy.api.routers import APIRouter

router = APIRouter()
router.register("actions", actions.ActionViewSet, basename="action")
router.register("operations", operations.OperationViewSet, basename="operation")
router.register("rollouts", rollouts.RolloutPlanViewSet, basename="rollout")

urlpatterns = [
    path("simulate/", actions.SimulateView.as_view(), name="simulate"),
    *router.urls,
]
