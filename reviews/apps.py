from django.apps import AppConfig


class ReviewsConfig(AppConfig):
    """Access reviews: each business unit's periodic review of dormant agents, unused grants,
    orphaned agents and stale credentials, answered keep or revoke by people. The portal
    roles get this app's permissions from the one sync after the last app migrates
    (``agents.apps``)."""

    name = "reviews"
    verbose_name = "Access reviews"
