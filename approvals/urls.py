"""Portal pages of approvals: the inbox, standing approvals and the e-mail link confirmation."""

from django.urls import path

from approvals import views_email, views_groups, views_inbox, views_standing, views_suggestions

app_name = "approvals"

urlpatterns = [
    path("inbox/", views_inbox.inbox, name="inbox"),
    path("inbox/list/", views_inbox.inbox_list, name="inbox-list"),
    path("inbox/<uuid:request_id>/", views_inbox.detail, name="detail"),
    path("inbox/change/<uuid:change_id>/", views_inbox.change_request, name="change"),
    path("inbox/<uuid:request_id>/decide/", views_inbox.decide, name="decide"),
    path("inbox/bulk/", views_inbox.bulk_decide, name="bulk-decide"),
    path("inbox/standing/", views_standing.standing_list, name="standing"),
    path("inbox/standing/new/", views_standing.standing_new, name="standing-new"),
    path(
        "inbox/standing/<int:standing_id>/",
        views_standing.standing_detail,
        name="standing-detail",
    ),
    path(
        "inbox/standing/<int:standing_id>/revoke/",
        views_standing.standing_revoke,
        name="standing-revoke",
    ),
    path("inbox/groups/", views_groups.inbox_grouped, name="inbox-grouped"),
    path("inbox/groups/<str:key>/", views_groups.group, name="group"),
    path("inbox/groups/<str:key>/decide/", views_groups.group_decide, name="group-decide"),
    path("inbox/suggestions/", views_suggestions.suggestion_list, name="suggestions"),
    path(
        "inbox/suggestions/<int:suggestion_id>/standing/",
        views_suggestions.suggestion_standing,
        name="suggestion-standing",
    ),
    path(
        "inbox/suggestions/<int:suggestion_id>/policy/",
        views_suggestions.suggestion_policy,
        name="suggestion-policy",
    ),
    path(
        "inbox/suggestions/<int:suggestion_id>/dismiss/",
        views_suggestions.suggestion_dismiss,
        name="suggestion-dismiss",
    ),
    path("approvals/e/<str:token>/", views_email.confirm, name="email-confirm"),
]
