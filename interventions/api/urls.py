"""/api/v1/interventions/ and /api/v1/actions/{id}/override/: people stepping in."""

from django.urls import path

from autonomy.api.routers import APIRouter
from interventions.api import views

router = APIRouter()
router.register("interventions", views.InterventionViewSet, basename="intervention")

urlpatterns = [
    path(
        "actions/<uuid:pk>/override/",
        views.ActionOverrideView.as_view(),
        name="action-override",
    ),
    *router.urls,
]
