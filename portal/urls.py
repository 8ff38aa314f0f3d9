"""Portal pages of the kernel: the live activity stream and one action's trace."""

from django.urls import path

from portal import views_activity, views_trace

app_name = "observability"

urlpatterns = [
    path("activity/", views_activity.activity_page, name="activity"),
    path("activity/stream/", views_activity.activity_stream, name="activity-stream"),
    path("actions/<uuid:action_id>/trace/", views_trace.action_trace_page, name="action-trace"),
]
