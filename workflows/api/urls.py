"""/api/v1/: tasks, runs, claims and run-scoped messages."""

from autonomy.api.routers import UUID_ID, APIRouter
from workflows.api import coordination, tasks

router = APIRouter()
router.register("claims", coordination.ClaimViewSet, basename="claim")
router.register("tasks", tasks.TaskViewSet, basename="task")
router.register("runs", tasks.RunViewSet, basename="run")
router.register(
    rf"runs/(?P<run_id>{UUID_ID})/messages",
    coordination.RunMessageViewSet,
    basename="run-message",
)

urlpatterns = router.urls
