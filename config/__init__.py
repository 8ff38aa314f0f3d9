"""The Django project: settings, urls, the Celery app, wsgi/asgi. The kernel is ``autonomy``."""

from .celery import app as celery_app

__all__ = ("celery_app",)
