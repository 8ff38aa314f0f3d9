import os

from django.apps import AppConfig
from django.conf import settings


class EmbeddedConfig(AppConfig):
    name = "embedded"
    verbose_name = "Embedded default (filesystem broker)"

    def ready(self) -> None:
        # The filesystem broker is a set of folders; they must exist before anyone polls them.
        for key in ("data_folder_in", "data_folder_out", "control_folder", "processed_folder"):
            folder = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(key)
            if folder:
                os.makedirs(folder, exist_ok=True)
