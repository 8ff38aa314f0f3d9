"""The project's URLs: the admin and portal pages, probes, and /api/v1/, where the kernel and
each app include their own ``api/urls.py``."""

from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from agents import views as agent_views
from agents.api import urls as agents_api
from approvals.api import urls as approvals_api
from autonomy import mcp_gateway
from autonomy.api import errors as api_errors
from autonomy.api import unavailable as api_unavailable
from autonomy.api import urls as kernel_api
from autonomy.api.routers import api_root_urls
from autonomy.observability import health
from governance.api import urls as governance_api
from interventions.api import urls as interventions_api
from portal import metrics, views_dashboard
from reviews.api import urls as reviews_api
from workflows.api import urls as workflows_api

# /api/v1/: the kernel's endpoints and each app's own (``<app>/api/urls.py``), listed by the
# API root in this order.
API_V1 = (
    agents_api, kernel_api, interventions_api, approvals_api, workflows_api, governance_api,
    reviews_api,
)  # fmt: skip

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("dashboard/", views_dashboard.dashboard, name="dashboard"),
    path("dashboard/live/", views_dashboard.dashboard_live, name="dashboard-live"),
    path("admin/", admin.site.urls),
    path("", include("approvals.urls")),
    path("", include("workflows.urls")),
    path("", include("agents.urls")),
    path("", include("portal.urls")),
    path("", include("portal.urls_analytics")),
    path("", include("portal.urls_rollouts")),
    path("", include("portal.urls_trials")),
    path("", include("portal.urls_permission_models")),
    path("", include("portal.urls_policies")),
    path("", include("interventions.urls")),
    path("", include("compliance.urls")),
    path("", include("reviews.urls")),
    path("oidc/", include("mozilla_django_oidc.urls")),
    path("signin/refused/", agent_views.signin_refused, name="signin-refused"),
    *[path("api/v1/", include(api)) for api in API_V1],
    path("api/v1/", include(api_root_urls(api.router for api in API_V1))),
    path("mcp/", mcp_gateway.MCPGatewayView.as_view(), name="mcp-gateway"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    # Both for signed-in people and API clients only (SPECTACULAR_SETTINGS). The docs page's
    # script is a response of its own (``?script``), not inline, for the CSP.
    path("api/docs/", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
]

admin.site.site_header = "Autonomy OS"
admin.site.site_title = "Autonomy OS"
admin.site.index_title = "Control plane"


def handler404(request, exception=None):
    if request.path.startswith("/api/"):
        return api_errors.json_404(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def handler500(request):
    if request.path.startswith("/api/"):
        return api_unavailable.server_error(request)
    from django.views.defaults import server_error

    return server_error(request)


def handler400(request, exception=None):
    if request.path.startswith("/api/"):
        return api_errors.json_400(request, exception)
    from django.views.defaults import bad_request

    return bad_request(request, exception)
