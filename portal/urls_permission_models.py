"""The portal page that clones a role's permission model to another business unit."""

from django.urls import path

from portal import views_permission_models

app_name = "permission-models"

urlpatterns = [
    path("permission-models/clone/", views_permission_models.clone_page, name="clone"),
]
