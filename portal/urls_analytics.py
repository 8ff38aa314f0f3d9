"""Portal pages of the workflow and agent analytics, under /workflows/analytics/. The portal
draws them (``portal.charts``) from what ``workflows.analytics`` reads: the portal sits above
workflows, never the other way."""

from django.urls import path

from portal import views_analytics

app_name = "analytics"

urlpatterns = [
    path("workflows/analytics/", views_analytics.analytics_index, name="index"),
    path("workflows/analytics/<slug:key>/", views_analytics.analytics_template, name="template"),
]
