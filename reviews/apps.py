from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ReviewsConfig(AppConfig):
    """Access reviews: each business unit's periodic review of dormant agents, unused grants,
    orphaned agents and stale credentials, answered keep or revoke by people."""

    name = "reviews"
    verbose_name = "Access reviews"

    def ready(self) -> None:
        # The portal roles are synced after the agents app migrates, before this app's
        # permissions exist: sync again once they do, so risk officers, IT admins and
        # auditors hold them from the first migrate on.
        post_migrate.connect(_sync_portal_roles, sender=self)


def _sync_portal_roles(**kwargs):
    from agents.services import portal_roles_sync

    portal_roles_sync()
