"""Portal pages of policy history, under /policies/."""

from django.urls import path

from portal import views_policies

app_name = "policies"

urlpatterns = [
    path("policies/", views_policies.policy_list, name="list"),
    path("policies/<int:policy_id>/", views_policies.policy_history, name="history"),
    path(
        "policies/<int:policy_id>/versions/<int:number>/",
        views_policies.policy_version_page,
        name="version",
    ),
    path(
        "policies/<int:policy_id>/versions/<int:number>/rollback/",
        views_policies.policy_rollback,
        name="rollback",
    ),
]
