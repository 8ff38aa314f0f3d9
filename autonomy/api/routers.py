"""The routers behind /api/v1/: each app's ``api/urls.py`` registers its viewsets on an
``APIRouter`` (NetBox: ``NetBoxRouter``), and the project urls add one root over them all."""

from collections.abc import Iterable

from django.urls import path
from rest_framework.routers import DefaultRouter, SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns


class APIRouter(DefaultRouter):
    """An app's routes, each also answering with a format suffix (``agents.json``). No root
    view: /api/v1/ lists every app's routes, so it is built once (``api_root_urls``)."""

    include_root_view = False


def api_root_urls(routers: Iterable[SimpleRouter]) -> list:
    """The /api/v1/ root (and ``.json``): every router's list endpoints, in order, as DRF's
    ``DefaultRouter`` lists its own."""
    root = DefaultRouter()
    for router in routers:
        root.registry.extend(router.registry)
    return format_suffix_patterns([path("", root.get_api_root_view(), name=root.root_view_name)])
