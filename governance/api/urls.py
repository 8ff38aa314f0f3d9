"""/api/v1/governance/: bundle export, plan and apply."""

from django.urls import path

from autonomy.api.routers import APIRouter
from governance.api import views

router = APIRouter()  # no viewsets: the API root lists none of these

urlpatterns = [
    path("governance/bundle/", views.BundleView.as_view(), name="governance-bundle"),
    path("governance/plan/", views.PlanView.as_view(), name="governance-plan"),
    path("governance/apply/", views.ApplyView.as_view(), name="governance-apply"),
]
