"""The worker processes, by their last heartbeat (``autonomy.liveness``): what executes the
actions and workflow steps right now. Read only: the workers write it themselves."""

from django.contrib import admin
from django.utils import timezone

from autonomy import services
from autonomy.admin_view_only import ViewOnly
from autonomy.models import WorkerBeat


@admin.register(WorkerBeat)
class WorkerBeatAdmin(ViewOnly, admin.ModelAdmin):
    list_display = ["name", "started_at", "last_beat", "alive"]
    ordering = ["-beat_at"]

    @admin.display(description="Last beat", ordering="beat_at")
    def last_beat(self, obj):
        seconds = (timezone.now() - obj.beat_at).total_seconds()
        return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"

    @admin.display(boolean=True, description="Alive")
    def alive(self, obj):
        return services.worker_alive(beat_at=obj.beat_at)
