"""The compliance page and the evidence pack download, under /compliance/."""

from django.urls import path

from compliance import views

app_name = "compliance"

urlpatterns = [
    path("compliance/", views.index, name="index"),
    path("compliance/pack/", views.pack, name="pack"),
]
