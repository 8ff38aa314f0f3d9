"""Portal pages of log-only policy trials, under /policies/trials/."""

from django.urls import path

from portal import views_trials

app_name = "trials"

urlpatterns = [
    path("policies/trials/", views_trials.trial_list, name="list"),
    path("policies/trials/start/", views_trials.trial_start, name="start"),
    path("policies/trials/<int:trial_id>/", views_trials.trial_page, name="detail"),
    path("policies/trials/<int:trial_id>/stop/", views_trials.trial_stop, name="stop"),
    path("policies/trials/<int:trial_id>/promote/", views_trials.trial_promote, name="promote"),
]
