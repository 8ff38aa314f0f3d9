"""``manage.py verify_audit``: seal, then check every record's MAC, the chain from genesis,
the head row and the published checkpoints; exit 1 naming the first broken record."""

import sys

from django.core.management.base import BaseCommand
from django.db import DatabaseError

from autonomy.audit import seal, verify_chain
from autonomy.audit.verify import CHECKPOINTS


class Command(BaseCommand):
    help = (
        "Verify the audit trail: every record's MAC, the hash chain, the database head and "
        "the signed checkpoints published outside the database; name the first broken record."
    )

    def add_arguments(self, parser):
        parser.add_argument("--batch-size", type=int, default=2000, help="Records per fetch.")
        parser.add_argument(
            "--checkpoints",
            type=int,
            default=CHECKPOINTS,
            help="How many of the newest published checkpoints to check (0: all).",
        )

    def handle(self, *args, batch_size: int, checkpoints: int, **options):
        try:
            sealed = seal()
        except DatabaseError as exc:  # a chain that cannot be extended is a finding too
            sealed = 0
            self.stderr.write(f"sealing failed, verifying what is sealed: {exc}")
        report = verify_chain(batch_size=batch_size, checkpoints=checkpoints or None)
        self.stdout.write(f"sealed {sealed} record(s) first")
        for line in report.checked_what:
            self.stdout.write(f"checked: {line}")
        if report.ok:
            self.stdout.write(
                f"audit chain OK: {report.checked} records, head at #{report.head_seq}, "
                f"{report.checkpoints} checkpoint(s) hold, {report.unsealed} unsealed"
            )
            return
        where = (
            f"record #{report.first_broken_seq}"
            if report.first_broken_seq is not None
            else "the published checkpoints"
        )
        self.stderr.write(f"audit chain BROKEN at {where}: {report.problem}")
        sys.exit(1)
