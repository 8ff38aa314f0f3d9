"""Portal pages of the agent registry."""

from django.urls import path

from agents import views_detail

app_name = "agents"

urlpatterns = [
    path("agents/<slug:slug>/", views_detail.agent_detail, name="detail"),
    path(
        "agents/<slug:slug>/flags/<int:flag_id>/review/",
        views_detail.flag_review,
        name="flag-review",
    ),
]
