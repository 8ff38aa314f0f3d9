"""/api/v1/approvals/: the approval inbox for people who decide from chat tools;
/api/v1/standing-approvals/: standing approvals, granted and revoked."""

from approvals.api import standing, views
from autonomy.api.routers import APIRouter

router = APIRouter()
router.register("approvals/groups", views.ApprovalGroupViewSet, basename="approval-group")
router.register("approvals/suggestions", views.SuggestionViewSet, basename="suggestion")
router.register("approvals", views.ApprovalViewSet, basename="approval")
router.register(
    "standing-approvals", standing.StandingApprovalViewSet, basename="standing-approval"
)

urlpatterns = router.urls
