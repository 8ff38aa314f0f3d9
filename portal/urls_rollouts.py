"""Portal pages of rollout plans, under /rollouts/."""

from django.urls import path

from portal import views_rollouts

app_name = "rollouts"

urlpatterns = [
    path("rollouts/", views_rollouts.plan_list, name="list"),
    path("rollouts/<slug:plan>/", views_rollouts.plan_page, name="plan"),
    path("rollouts/<slug:plan>/live/", views_rollouts.plan_live, name="plan-live"),
    path("rollouts/<slug:plan>/promote/", views_rollouts.plan_propose, name="propose"),
    path("rollouts/<slug:plan>/demote/", views_rollouts.plan_demote, name="demote"),
]
