"""``manage.py evidence_verify PACK.zip``: check an evidence pack's signature, every file's
hash and its audit records' chain with this installation's audit keys; exit 1 naming every
problem."""

import sys

from django.core.management.base import BaseCommand

from compliance.evidence import pack_verify


class Command(BaseCommand):
    help = "Verify an evidence pack: manifest signature, file hashes, audit records' chain."

    def add_arguments(self, parser):
        parser.add_argument("pack", help="The evidence pack (zip).")

    def handle(self, *args, pack, **options):
        with open(pack, "rb") as source:
            report = pack_verify(source)
        for check, ok in (
            ("signature", report.signature_ok),
            ("file hashes", report.files_ok),
            (f"audit records ({report.audit_records_checked} checked)", report.audit_ok),
        ):
            self.stdout.write(f"{check}: {'OK' if ok else 'FAILED'}")
        if report.ok:
            self.stdout.write(f"evidence pack OK: {pack}")
            return
        for problem in report.problems:
            self.stderr.write(f"problem: {problem}")
        self.stderr.write(f"evidence pack REFUSED: {pack}")
        sys.exit(1)
