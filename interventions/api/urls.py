"""/api/v1/interventions/, /api/v1/agents/{id}/pause|resume|quarantine|kill/ and
/api/v1/actions/{id}/override/: people stepping in."""

from django.urls import path

from autonomy.api.routers import APIRouter
from interventions.api import views

router = APIRouter()
router.register("interventions", views.InterventionViewSet, basename="intervention")
# Interventions on one agent answer beside the registry's agent endpoints.
router.register("agents", views.AgentInterventionViewSet, basename="agent-intervention")

urlpatterns = [
    path(
        "actions/<uuid:pk>/override/",
        views.ActionOverrideView.as_view(),
        name="action-override",
    ),
    *router.urls,
]
