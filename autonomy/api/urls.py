"""/api/v1/: one router for every app's API."""

from rest_framework.routers import DefaultRouter

from agents.api import views as agent_views

router = DefaultRouter()
router.register("agents", agent_views.AgentViewSet, basename="agent")
router.register("business-units", agent_views.BusinessUnitViewSet, basename="business-unit")
router.register("roles", agent_views.RoleViewSet, basename="role")
router.register("credentials", agent_views.CredentialViewSet, basename="credential")

urlpatterns = router.urls
