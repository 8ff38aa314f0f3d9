"""Autonomy OS: the project and the OS kernel."""

from .celery import app as celery_app

__all__ = ("celery_app",)
