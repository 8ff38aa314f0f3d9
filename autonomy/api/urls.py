"""/api/v1/: the kernel's endpoints (actions, simulate, interventions). Each app includes its
own from ``<app>/api/urls.py`` (``config/urls.py``)."""

from django.urls import path

from autonomy.api import actions, interventions, operations
from autonomy.api.routers import APIRouter

router = APIRouter()
router.register("actions", actions.ActionViewSet, basename="action")
router.register("operations", operations.OperationViewSet, basename="operation")
router.register("interventions", interventions.InterventionViewSet, basename="intervention")

urlpatterns = [
    path("simulate/", actions.SimulateView.as_view(), name="simulate"),
    path(
        "actions/<uuid:pk>/override/",
        interventions.ActionOverrideView.as_view(),
        name="action-override",
    ),
    *router.urls,
]
