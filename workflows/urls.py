"""Portal pages of workflows: runs and their timelines."""

from django.urls import path

from workflows import views

app_name = "workflows"

urlpatterns = [
    path("workflows/runs/", views.run_list, name="run-list"),
    path("workflows/runs/live/", views.run_list_live, name="run-list-live"),
    path("workflows/runs/<uuid:run_id>/", views.run_detail, name="run-detail"),
    path("workflows/runs/<uuid:run_id>/live/", views.run_live, name="run-live"),
    path(
        "workflows/runs/<uuid:run_id>/steps/<uuid:step_run_id>/<slug:control>/",
        views.step_control,
        name="step-control",
    ),
    path("workflows/runs/<uuid:run_id>/<slug:control>/", views.run_control, name="run-control"),
]
