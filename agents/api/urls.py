"""/api/v1/: the registry's endpoints (agents, business units, roles, credentials)."""

from agents.api import views
from autonomy.api.routers import APIRouter

router = APIRouter()
router.register("agents", views.AgentViewSet, basename="agent")
router.register("business-units", views.BusinessUnitViewSet, basename="business-unit")
router.register("roles", views.RoleViewSet, basename="role")
router.register("credentials", views.CredentialViewSet, basename="credential")
router.register("permission-models", views.PermissionModelViewSet, basename="permission-model")

urlpatterns = router.urls
