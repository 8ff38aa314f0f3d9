"""The worker processes, by their last heartbeat (``autonomy.liveness``): what executes the
actions and workflow steps right now. Read only: the workers write it themselves."""

from django.contrib import admin
from django.utils import timezone

from autonomy import services
from autonomy.models import WorkerBeat


@admin.register(WorkerBeat)
class WorkerBeatAdmin(admin.ModelAdmin):
    list_display = ["name", "started_at", "last_beat", "alive"]
    ordering = ["-beat_at"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="Last beat", ordering="beat_at")
    def last_beat(self, obj):
        seconds = (timezone.now() - obj.beat_at).total_seconds()
        return f"{seconds:.0f} s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"

    @admin.display(boolean=True, description="Alive")
    def alive(self, obj):
        return services.worker_alive(beat_at=obj.beat_at)
