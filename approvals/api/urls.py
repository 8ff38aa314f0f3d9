"""/api/v1/approvals/: the approval inbox for people who decide from chat tools."""

from approvals.api import views
from autonomy.api.routers import APIRouter

router = APIRouter()
router.register("approvals/groups", views.ApprovalGroupViewSet, basename="approval-group")
router.register("approvals", views.ApprovalViewSet, basename="approval")

urlpatterns = router.urls
