"""Portal pages and buttons of intervention, under /interventions/."""

from django.urls import path

from interventions import views

app_name = "interventions"

urlpatterns = [
    path("interventions/", views.index, name="index"),
    path("interventions/stop/", views.stop, name="stop"),
    path("interventions/<int:pk>/lift/", views.lift, name="lift"),
    path(
        "interventions/agents/<uuid:agent_id>/<slug:verb>/",
        views.agent_intervene,
        name="agent",
    ),
    path("interventions/actions/<uuid:action_id>/override/", views.override, name="override"),
    path("interventions/steps/<uuid:step_run_id>/redirect/", views.redirect_step, name="redirect"),
]
