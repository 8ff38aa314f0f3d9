"""``manage.py verify_audit``: walk the audit chain; exit 1 naming the first broken record."""

import sys

from django.core.management.base import BaseCommand

from autonomy.audit import verify_chain


class Command(BaseCommand):
    help = "Verify the hash chain of the audit trail and name the first broken record."

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=2000, help="Records per fetch.")

    def handle(self, *args, batch_size: int, **options):
        report = verify_chain(batch_size=batch_size)
        if report.ok:
            self.stdout.write(f"audit chain OK: {report.checked} records")
            return
        self.stderr.write(
            f"audit chain BROKEN at record #{report.first_broken_seq}: {report.problem}"
        )
        sys.exit(1)
