"""``manage.py publish_audit_head``: seal, then publish a signed checkpoint of the head."""

import sys

from django.core.management.base import BaseCommand

from autonomy.audit import NotExtending, publish


class Command(BaseCommand):
    help = "Seal the audit trail and publish a signed checkpoint of its head outside the database."

    def add_arguments(self, parser):
        parser.add_argument(
            "--force", action="store_true", help="Publish even if the head has not moved."
        )

    def handle(self, *args, force: bool, **options):
        try:
            published = publish(force=force)
        except NotExtending as exc:
            self.stderr.write(f"refused to publish: {exc}")
            sys.exit(1)
        checkpoint = published.checkpoint
        if checkpoint is None:
            self.stdout.write(f"sealed {published.sealed}; the head is already published")
        else:
            self.stdout.write(
                f"sealed {published.sealed}; published checkpoint #{checkpoint['seq']} "
                f"{checkpoint['hash']} signed by {checkpoint['key_id']}"
            )
