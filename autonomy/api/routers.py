"""The routers behind /api/v1/: each app's ``api/urls.py`` registers its viewsets on an
``APIRouter`` (NetBox: ``NetBoxRouter``), and the project urls add one root over them all."""

from collections.abc import Iterable

from django.urls import path
from rest_framework.routers import DefaultRouter, SimpleRouter
from rest_framework.urlpatterns import format_suffix_patterns

# What an id in an API path may look like. Records are keyed by UUID unless their viewset says
# otherwise (``lookup_value_regex = INTEGER_ID``, or a pattern of its own), so a path with
# anything else never reaches a view: it is a 404 from the URL resolver, the same answer for
# every endpoint and every caller, instead of a lookup that fails its own way in each view.
UUID_ID = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
INTEGER_ID = "[0-9]{1,18}"


class APIRouter(DefaultRouter):
    """An app's routes, each also answering with a format suffix (``agents.json``). No root
    view: /api/v1/ lists every app's routes, so it is built once (``api_root_urls``)."""

    include_root_view = False

    def get_lookup_regex(self, viewset, lookup_prefix=""):
        lookup_field = getattr(viewset, "lookup_field", "pk")
        kwarg = getattr(viewset, "lookup_url_kwarg", None) or lookup_field
        value = getattr(viewset, "lookup_value_regex", UUID_ID)
        return f"(?P<{lookup_prefix}{kwarg}>{value})"


def api_root_urls(routers: Iterable[SimpleRouter]) -> list:
    """The /api/v1/ root (and ``.json``): every router's list endpoints, in order, as DRF's
    ``DefaultRouter`` lists its own."""
    root = DefaultRouter()
    for router in routers:
        # Only list endpoints: a viewset of detail actions only (interventions on an agent)
        # shares its prefix with the registry's and must not take its place in the root.
        root.registry.extend(entry for entry in router.registry if hasattr(entry[1], "list"))
    return format_suffix_patterns([path("", root.get_api_root_view(), name=root.root_view_name)])
