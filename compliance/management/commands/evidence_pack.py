"""``manage.py evidence_pack --from 2026-07-01 --to 2026-09-30 --out pack.zip`` (or
``--quarter 2026-Q3``): write the signed evidence pack of a period; the export is audited."""

import shutil
from datetime import date

from django.core.management.base import BaseCommand, CommandError

from compliance import periods, services


class Command(BaseCommand):
    help = "Write the signed evidence pack of a period (inclusive days, or a quarter)."

    def add_arguments(self, parser):
        parser.add_argument("--from", dest="first", type=date.fromisoformat, help="First day.")
        parser.add_argument("--to", dest="last", type=date.fromisoformat, help="Last day.")
        parser.add_argument("--quarter", help="A calendar quarter instead, e.g. 2026-Q3.")
        parser.add_argument("--out", required=True, help="Where to write the zip.")

    def handle(self, *args, first, last, quarter, out, **options):
        try:
            if quarter:
                period = periods.quarter(quarter)
            elif first and last:
                period = periods.days(first, last)
            else:
                raise ValueError("give --from and --to, or --quarter")
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        actor = "manage.py evidence_pack"
        file, manifest = services.evidence_pack_write(period=period, actor=actor)
        with file, open(out, "wb") as target:
            shutil.copyfileobj(file, target)
        self.stdout.write(
            f"evidence pack {period.label} written to {out}: {len(manifest['files'])} files, "
            f"signed by key {manifest['key_id']}"
        )
