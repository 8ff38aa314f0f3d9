"""Recompute the dashboard's per-minute activity rows from the actions themselves."""

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from autonomy.observability.rollup import rollup_rebuild


class Command(BaseCommand):
    help = "Rebuild ActivityRollup rows from ActionRequest history."

    def add_arguments(self, parser):
        parser.add_argument(
            "--hours", type=float, default=None, help="only the last N hours (default: all)"
        )

    def handle(self, *args, hours=None, **options):
        since = timezone.now() - timedelta(hours=hours) if hours is not None else None
        written = rollup_rebuild(since=since)
        self.stdout.write(f"rollup rows written: {written}")
