import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
application = get_asgi_application()

from autonomy.process import freeze_startup_objects  # noqa: E402

freeze_startup_objects()  # Django is set up: its models, settings and apps
