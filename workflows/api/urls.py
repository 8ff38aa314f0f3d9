"""/api/v1/: tasks, runs, claims and run-scoped messages."""

from autonomy.api.routers import APIRouter
from workflows.api import coordination, tasks

router = APIRouter()
router.register("claims", coordination.ClaimViewSet, basename="claim")
router.register("tasks", tasks.TaskViewSet, basename="task")
router.register("runs", tasks.RunViewSet, basename="run")
router.register(
    r"runs/(?P<run_id>[0-9a-fA-F-]{36})/messages",
    coordination.RunMessageViewSet,
    basename="run-message",
)

urlpatterns = router.urls
