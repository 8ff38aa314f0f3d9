"""Recompute the workflow and agent analytics rollups from history."""

from django.core.management.base import BaseCommand

from workflows.services.rollup import analytics_rebuild


class Command(BaseCommand):
    help = "Rebuild the analytics rollups (steps, step times, runs, agents) from history."

    def handle(self, *args, **options):
        written = analytics_rebuild()
        self.stdout.write(
            "analytics rows written: " + ", ".join(f"{n} {k}" for k, n in written.items())
        )
