"""/api/v1/approvals/: the approval inbox for people who decide from chat tools."""

from approvals.api import views
from autonomy.api.routers import APIRouter

router = APIRouter()
router.register("approvals/suggestions", views.SuggestionViewSet, basename="suggestion")
router.register("approvals", views.ApprovalViewSet, basename="approval")

urlpatterns = router.urls
