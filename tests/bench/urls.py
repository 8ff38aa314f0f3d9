"""The project's URLs plus the bench's baseline endpoint (selected with ROOT_URLCONF)."""

from django.urls import path

from config.urls import handler400, handler404, handler500
from config.urls import urlpatterns as project_urls
from tests.bench.baseline import BaselineView

BASELINE_PATH = "/bench/baseline/"

urlpatterns = [path(BASELINE_PATH.strip("/") + "/", BaselineView.as_view()), *project_urls]

__all__ = ["BASELINE_PATH", "handler400", "handler404", "handler500", "urlpatterns"]
