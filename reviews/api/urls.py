"""/api/v1/reviews/: access reviews, read and answered by people."""

from autonomy.api.routers import APIRouter
from reviews.api import views

router = APIRouter()
router.register("reviews", views.AccessReviewViewSet, basename="access-review")

urlpatterns = router.urls
