from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from autonomy.connectors import openapi
from autonomy.connectors.services import connector_import_openapi
from autonomy.errors import DomainError
from autonomy.models import Connector

SYSTEMS = ("erp", "crm", "itsm")


class Command(BaseCommand):
    help = (
        "Import the operations of the running demo systems from their served OpenAPI documents "
        "into the erp, crm and itsm connectors (what the connector's Import button does)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--url", default="", help="the demo systems (default: "
                            "AUTONOMY_DEMO_SYSTEMS_URL or http://127.0.0.1:8100)")  # fmt: skip

    def handle(self, *args, url, **options):
        base = (url or settings.AUTONOMY_DEMO_SYSTEMS_URL or "http://127.0.0.1:8100").rstrip("/")
        for system in SYSTEMS:
            connector = Connector.objects.filter(slug=system).first()
            if connector is None:
                raise CommandError(f"No {system!r} connector: run `manage.py seed_demo` first.")
            try:
                document = openapi.fetch(f"{base}/{system}/openapi.json")
                imported = connector_import_openapi(connector=connector, document=document, by=None)
            except (openapi.OpenAPIError, DomainError) as exc:
                raise CommandError(f"{system}: {exc}") from None
            self.stdout.write(f"import_demo_systems: {system}: {len(imported)} operations")
